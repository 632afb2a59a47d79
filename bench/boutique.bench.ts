/**
 * The paper's table (HotOS '23, "Towards Modern Development of Cloud
 * Applications": Online Boutique as one modular binary, deployed colocated,
 * used up to 9× fewer cores and had up to 15× lower median latency than the
 * same app as gRPC microservices), measured for effect-weaver on this machine.
 *
 * Four deployments of examples/boutique, alternated within each round:
 * - baseline: the gRPC microservices (examples/boutique/baseline), one Node process per service;
 * - multi split: `weaver multi deploy weaver.toml`, one process per component (plain TCP between them, the
 *   default, as the baseline's gRPC is plaintext), and the same with `mtls = true` (mutual TLS);
 * - multi colocated: `weaver multi deploy weaver-colocated.toml`, all components with main;
 * - single: `weaver single deploy weaver.toml`.
 * The weaver ones through the built CLI with the bundled binary, each stopped by the pid spawned.
 *
 * Load: open loop at a fixed rate of tasks per second, each task a shopper's
 * visit with the locustfile's mix (index 1, setCurrency 2, browseProduct 10,
 * addToCart 2 — GET product then POST cart —, viewCart 3, checkout 1 —
 * addToCart then POST checkout) for a random one of the shoppers. A task's
 * first request is timed from its scheduled start, not from when it was sent
 * (no coordinated omission); the next requests of a task from when they are
 * sent, right after the previous answer; at most 2,000 visits in flight, later ones dropped and counted. CPU: user + system seconds of every
 * process of the deployment (from /proc/<pid>/stat, before and after the
 * measured window, warm-up excluded); the load generator's own CPU is shown
 * apart and not counted.
 *
 * `npm run build && node --import tsx bench/boutique.bench.ts`; environment:
 * BOUTIQUE_RATE (visits/s, 100: about 120 requests/s), BOUTIQUE_SECONDS (measured, 20),
 * BOUTIQUE_WARMUP (seconds, 5), BOUTIQUE_ROUNDS (2).
 */
import * as Http from "node:http"
import * as Os from "node:os"
import * as Deployments from "../examples/boutique/harness/Deployments.js"
import * as Processes from "../examples/boutique/harness/Processes.js"

const RATE = Number(process.env.BOUTIQUE_RATE ?? 100)
const SECONDS = Number(process.env.BOUTIQUE_SECONDS ?? 20)
const WARMUP = Number(process.env.BOUTIQUE_WARMUP ?? 5)
const ROUNDS = Number(process.env.BOUTIQUE_ROUNDS ?? 2)
const SHOPPERS = 200
const MAX_IN_FLIGHT = 2_000
for (const [name, value] of Object.entries({ RATE, SECONDS, WARMUP, ROUNDS })) {
  if (!Number.isFinite(value) || value <= 0 || (name === "ROUNDS" && !Number.isInteger(value))) {
    process.stderr.write(`BOUTIQUE_${name}=${value}: expected a positive number\n`)
    process.exit(2)
  }
}

// ---------------------------------------------------------------------------
// The shoppers and their visits (the locustfile's tasks and weights).

const products = [
  "0PUK6V6EV0",
  "1YMWWN1N4O",
  "2ZYFJ3GM2N",
  "66VCHSJNUP",
  "6E92ZMYYFZ",
  "9SIQT8TOJO",
  "L9ECAV7KIM",
  "LS4PSXUNUM",
  "OLJCESPC7Z"
]
const currencies = ["EUR", "USD", "JPY", "CAD", "GBP", "TRY"]
const pick = <A>(list: ReadonlyArray<A>): A => list[Math.floor(Math.random() * list.length)]!
const int = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1))

/** A random 16-digit VISA number that passes the Luhn check, as Faker's `credit_card_number(card_type="visa")`. */
const visaNumber = () => {
  const digits = [4, ...Array.from({ length: 14 }, () => int(0, 9))]
  let total = 0
  for (let i = 0; i < 15; i++) {
    let d = digits[14 - i]!
    if (i % 2 === 0) d = d * 2 > 9 ? d * 2 - 9 : d * 2
    total += d
  }
  return [...digits, (10 - (total % 10)) % 10].join("")
}

interface Request {
  readonly method: "GET" | "POST"
  readonly path: string
  readonly body?: unknown
}

const addToCart = (): ReadonlyArray<Request> => {
  const productId = pick(products)
  return [
    { method: "GET", path: `/product/${productId}` },
    { method: "POST", path: "/cart", body: { productId, quantity: int(1, 10) } }
  ]
}

const tasks: ReadonlyArray<readonly [number, () => ReadonlyArray<Request>]> = [
  [1, () => [{ method: "GET", path: "/" }]],
  [2, () => [{ method: "POST", path: "/setCurrency", body: { currencyCode: pick(currencies) } }]],
  [10, () => [{ method: "GET", path: `/product/${pick(products)}` }]],
  [2, addToCart],
  [3, () => [{ method: "GET", path: "/cart" }]],
  [1, () => {
    const year = new Date().getFullYear() + 1
    return [...addToCart(), {
      method: "POST",
      path: "/cart/checkout",
      body: {
        email: `shopper${int(1, 1_000_000)}@example.com`,
        address: {
          streetAddress: `${int(1, 9999)} Main St`,
          city: "Springfield",
          state: "IL",
          country: "USA",
          zipCode: int(10000, 99999)
        },
        creditCard: {
          creditCardNumber: visaNumber(),
          creditCardCvv: int(100, 999),
          creditCardExpirationYear: int(year, year + 70),
          creditCardExpirationMonth: int(1, 12)
        }
      }
    }]
  }]
]
const totalWeight = tasks.reduce((n, [w]) => n + w, 0)
const nextTask = () => {
  let r = Math.random() * totalWeight
  for (const [weight, task] of tasks) if ((r -= weight) < 0) return task()
  return tasks[0]![1]()
}

// ---------------------------------------------------------------------------
// The load generator.

interface Window {
  readonly latencies: Array<number>
  errors: number
  readonly errorSamples: Array<string>
  completed: number
}

const send = (agent: Http.Agent, address: string, cookie: string, request: Request) =>
  new Promise<{ status: number; setCookie: ReadonlyArray<string> }>((resolve, reject) => {
    const [host, port] = [
      address.slice(0, address.lastIndexOf(":")),
      Number(address.slice(address.lastIndexOf(":") + 1))
    ]
    const body = request.body === undefined ? undefined : JSON.stringify(request.body)
    const req = Http.request({
      agent,
      host,
      port,
      method: request.method,
      path: request.path,
      headers: {
        cookie,
        ...(body === undefined
          ? {}
          : { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
      }
    }, (res) => {
      let text = ""
      res.setEncoding("utf8").on("data", (chunk: string) => (text += chunk)).on("end", () => {
        if (res.statusCode !== 200) {
          reject(new Error(`${request.method} ${request.path}: ${res.statusCode} ${text.slice(0, 200)}`))
        } else resolve({ status: res.statusCode, setCookie: res.headers["set-cookie"] ?? [] })
      })
    })
    req.setTimeout(30_000, () => req.destroy(new Error(`${request.method} ${request.path}: no answer in 30 s`)))
    req.once("error", reject)
    req.end(body)
  })

/** Runs the load for `seconds` after `warmup` seconds; the measured window's latencies and CPU. */
const drive = async (deployment: Deployments.Deployment) => {
  const agent = new Http.Agent({ keepAlive: true, maxSockets: Infinity })
  const shoppers = Array.from(
    { length: SHOPPERS },
    (_, i) => ({ cookie: `shop_session-id=bench-${i}-${Date.now()}`, currency: "USD" })
  )
  const warmupEnd = performance.now() + WARMUP * 1000
  let window: Window | undefined
  let inFlight = 0
  let dropped = 0
  const visit = async (scheduled: number) => {
    const shopper = pick(shoppers)
    const w = window
    let start = scheduled
    try {
      for (const request of nextTask()) {
        const { setCookie } = await send(
          agent,
          deployment.address,
          `${shopper.cookie}; shop_currency=${shopper.currency}`,
          request
        )
        const end = performance.now()
        if (w !== undefined) {
          w.latencies.push(end - start)
          w.completed++
        }
        start = end
        const currency = setCookie.map((c) => /^shop_currency=([^;]+)/.exec(c)?.[1]).find((c) => c !== undefined)
        if (currency !== undefined) shopper.currency = currency
      }
    } catch (error) {
      if (w !== undefined) {
        w.errors++
        if (w.errorSamples.length < 3) w.errorSamples.push(String(error))
      }
    }
  }
  const t0 = performance.now()
  const interval = 1000 / RATE
  const end = warmupEnd + SECONDS * 1000
  let i = 0
  let cpuBefore: ReadonlyMap<number, number> = new Map()
  let generatorBefore = process.cpuUsage()
  let windowStart = 0
  const pending = new Set<Promise<void>>()
  while (true) {
    const scheduled = t0 + i * interval
    if (scheduled >= end) break
    const now = performance.now()
    if (scheduled > now) await new Promise((resolve) => setTimeout(resolve, Math.max(0, scheduled - now - 1)))
    while (performance.now() < scheduled) { /* the last millisecond, spun: timers are coarse */ }
    if (window === undefined && scheduled >= warmupEnd) {
      window = { latencies: [], errors: 0, errorSamples: [], completed: 0 }
      cpuBefore = Processes.cpuSeconds(deployment.pids())
      generatorBefore = process.cpuUsage()
      windowStart = performance.now()
    }
    i++
    if (inFlight >= MAX_IN_FLIGHT) {
      if (window !== undefined) dropped++
      continue
    }
    inFlight++
    const p: Promise<void> = visit(scheduled).finally(() => {
      inFlight--
      pending.delete(p)
    })
    pending.add(p)
  }
  // Measured up to the last scheduled send; answers still in flight count when they arrive, their CPU up to now.
  const cpuAfter = Processes.cpuSeconds(deployment.pids())
  const generator = process.cpuUsage(generatorBefore)
  const elapsed = (performance.now() - windowStart) / 1000
  await Promise.all(pending)
  agent.destroy()
  let cpu = 0
  const perProcess: Array<readonly [string, number]> = []
  for (const [pid, seconds] of cpuAfter) {
    const used = seconds - (cpuBefore.get(pid) ?? 0)
    cpu += used
    const label = deployment.label(pid)
    perProcess.push([label.length > 48 ? `${label.slice(0, 45)}...` : label, used])
  }
  perProcess.sort((a, b) => b[1] - a[1])
  const w = window!
  return {
    cpu,
    perProcess,
    elapsed,
    processes: cpuAfter.size,
    generatorCpu: (generator.user + generator.system) / 1e6,
    latencies: w.latencies,
    completed: w.completed,
    errors: w.errors,
    errorSamples: w.errorSamples,
    dropped
  }
}

// ---------------------------------------------------------------------------

type Result = Awaited<ReturnType<typeof drive>>
const deployments: ReadonlyArray<readonly [string, () => Promise<Deployments.Deployment>]> = [
  ["baseline: gRPC microservices", Deployments.deployBaseline],
  ["weaver multi, split", () => Deployments.deployWeaver("multi", "weaver.toml")],
  // What encrypting and authenticating every call between processes costs, next to the plaintext default.
  ["weaver multi, split, mtls = true", () => Deployments.deployWeaver("multi", "weaver.toml", { mtls: true })],
  ["weaver multi, colocated", () => Deployments.deployWeaver("multi", "weaver-colocated.toml")],
  ["weaver single", () => Deployments.deployWeaver("single", "weaver.toml")]
]

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!

const main = async () => {
  process.stdout.write(
    `Online Boutique, ${RATE} visits/s open loop (locustfile mix), ${WARMUP} s warm-up + ${SECONDS} s measured, ` +
      `${ROUNDS} round(s); load average ${
        Os.loadavg().map((n) => n.toFixed(1)).join(" ")
      } on ${Os.cpus().length} cores\n\n`
  )
  const results = new Map<string, Array<Result>>()
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [name, deploy] of deployments) {
      const deployment = await deploy()
      try {
        const result = await drive(deployment)
        results.set(name, [...(results.get(name) ?? []), result])
        const sorted = [...result.latencies].sort((a, b) => a - b)
        process.stdout.write(
          `round ${round} ${name.padEnd(30)} ${result.processes} processes, ${
            (result.completed / result.elapsed).toFixed(0)
          } req/s, ` +
            `${result.cpu.toFixed(2)} CPU s, p50 ${percentile(sorted, 0.5).toFixed(2)} ms, p99 ${
              percentile(sorted, 0.99).toFixed(2)
            } ms, ` +
            `errors ${result.errors}, dropped ${result.dropped}, load generator ${
              result.generatorCpu.toFixed(2)
            } CPU s\n`
        )
        process.stdout.write(
          `    CPU by process: ${
            result.perProcess.slice(0, 4).map(([label, used]) => `${label} ${(100 * used / result.cpu).toFixed(0)}%`)
              .join(", ")
          }\n`
        )
        for (const sample of result.errorSamples) process.stdout.write(`    error: ${sample}\n`)
      } finally {
        await deployment.stop()
      }
    }
  }
  // Every round's requests together: CPU summed over rounds per request, latencies pooled.
  const rows = deployments.map(([name]) => {
    const runs = results.get(name)!
    const completed = runs.reduce((n, r) => n + r.completed, 0)
    const cpu = runs.reduce((n, r) => n + r.cpu, 0)
    const elapsed = runs.reduce((n, r) => n + r.elapsed, 0)
    const sorted = runs.flatMap((r) => r.latencies).sort((a, b) => a - b)
    return {
      name,
      processes: runs[0]!.processes,
      rps: completed / elapsed,
      cores: cpu / elapsed,
      cpuPer1k: (cpu / completed) * 1000,
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      errors: runs.reduce((n, r) => n + r.errors + r.dropped, 0),
      requests: completed
    }
  })
  const base = rows[0]!
  process.stdout.write(
    `\n| deployment | processes | req/s | cores used | CPU s / 1k req | p50 ms | p99 ms | fewer cores than baseline | lower p50 than baseline | errors |\n` +
      `|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n`
  )
  for (const row of rows) {
    process.stdout.write(
      `| ${row.name} | ${row.processes} | ${row.rps.toFixed(0)} | ${row.cores.toFixed(2)} | ${
        row.cpuPer1k.toFixed(2)
      } | ` +
        `${row.p50.toFixed(2)} | ${row.p99.toFixed(2)} | ${(base.cpuPer1k / row.cpuPer1k).toFixed(1)}× | ` +
        `${(base.p50 / row.p50).toFixed(1)}× | ${row.errors} |\n`
    )
  }
  process.stdout.write(
    `| paper (Service Weaver, Go, colocated vs gRPC microservices) | | | | | | | up to 9× | up to 15× | |\n`
  )
  const failed = rows.filter((r) => r.errors > 0.01 * r.requests)
  if (failed.length > 0) {
    process.stdout.write(`\nmore than 1% errors or dropped visits: ${failed.map((r) => r.name).join(", ")}\n`)
    process.exitCode = 1
  }
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`)
  process.exit(1)
})
