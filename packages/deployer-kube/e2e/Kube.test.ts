/**
 * `weaver kube deploy` on a real single-node Kubernetes (scripts/kube-cluster.sh; run with
 * `npm run test:kube`, which brings the cluster up and down around this file).
 *
 * hello is deployed with the real CLI, reached through its listener Service, its Reverser pod deleted under
 * load, its Reverser group scaled to 3, and a second version deployed beside the first; the Online Boutique is
 * deployed with one Deployment per component and driven through a shopper's flows; each step checks what a
 * user relies on, from outside the cluster (the test process reaches Service and pod IPs through the host's
 * routes into the cluster's namespace).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { promisify } from "node:util"

const execFile = promisify(ChildProcess.execFile)
const root = Path.resolve(import.meta.dirname, "../../..")
const weaver = Path.join(root, "packages/cli/bin/weaver.js")
const hello = Path.join(root, "examples/hello")
const registry = process.env.WEAVER_KUBE_REGISTRY
const baseImage = process.env.WEAVER_KUBE_BASE_IMAGE

const kubectl = async (...args: Array<string>): Promise<string> =>
  (await execFile("kubectl", args, { maxBuffer: 32 * 1024 * 1024 })).stdout

const kubectlJson = async (...args: Array<string>): Promise<any> => JSON.parse(await kubectl(...args, "-o", "json"))

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it returns a value other than undefined, for at most `seconds`. */
const eventually = async <A>(what: string, seconds: number, check: () => Promise<A | undefined>): Promise<A> => {
  const deadline = Date.now() + seconds * 1000
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (error) {
      last = error
    }
    await sleep(250)
  }
  throw new Error(`timed out after ${seconds}s waiting for ${what}${last === undefined ? "" : `: ${String(last)}`}`)
}

const get = async (url: string): Promise<{ status: number; body: string }> => {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) })
  return { status: response.status, body: await response.text() }
}

interface Deployed {
  readonly version: string
  readonly output: string
  readonly seconds: number
  /** The listener's URL (its Service's cluster IP). */
  readonly url: string
}

const workDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "weaver-kube-e2e-"))

/** The `who` fixture (hello plus `GET /who`), bundled as its binary. */
const whoBinary = Path.join(workDir, "who.mjs")

/**
 * `weaver kube deploy --apply` of hello, or of the `who` fixture tagged `variant` (`WHO_VARIANT` in
 * `[serviceweaver] env`); resolves once the listener answers.
 */
const deploy = async (app: "hello" | "who", variant = "blue", tool = weaver): Promise<Deployed> => {
  const dir = Path.join(workDir, `${app}-${variant}${tool === weaver ? "" : "-custom"}`)
  Fs.mkdirSync(dir, { recursive: true })
  Fs.writeFileSync(
    Path.join(dir, "weaver.toml"),
    app === "hello"
      ? Fs.readFileSync(Path.join(hello, "weaver.toml"), "utf8")
        .replace(`binary = "./dist/hello.mjs"`, `binary = ${JSON.stringify(Path.join(hello, "dist/hello.mjs"))}`)
      : `[serviceweaver]\nname = "who"\nbinary = ${JSON.stringify(whoBinary)}\nenv = ["WHO_VARIANT=${variant}"]\n`
  )
  const service = app === "hello" ? "hello" : "who"
  Fs.writeFileSync(
    Path.join(dir, "kube.yaml"),
    [
      "appConfig: weaver.toml",
      `repo: ${registry}`,
      `baseImage: ${baseImage}`,
      "listeners:",
      "  - name: hello",
      "    public: true",
      `    serviceName: ${service}`,
      "scalingSpec:",
      "  maxReplicas: 5",
      ""
    ].join("\n")
  )
  const started = performance.now()
  const command = tool === weaver ? [weaver, "kube", "deploy"] : [tool, "deploy"]
  const { stdout } = await execFile(
    process.execPath,
    [...command, "--apply", "--out", dir, "kube.yaml"],
    {
      cwd: dir,
      maxBuffer: 32 * 1024 * 1024
    }
  )
  const version = new RegExp(`Kubernetes manifests of ${app} version ([0-9a-f]{8})`).exec(stdout)?.[1]
  assert.isDefined(version, stdout)
  const url = new RegExp(`Listener hello of version ${version}: Service ${service}, (http://[\\d.]+:80) `).exec(stdout)
    ?.[1]
  assert.isDefined(url, stdout)
  await eventually(
    "the first answer",
    60,
    async () => (await get(`${url}/hello?name=Weaver`)).status === 200 || undefined
  )
  return { version: version!, output: stdout, seconds: (performance.now() - started) / 1000, url: url! }
}

const listenerOf = async (service: string) => {
  const object = await kubectlJson("get", "service", service)
  return {
    url: `http://${object.spec.clusterIP}:${object.spec.ports[0].port}`,
    version: object.metadata.labels["serviceweaver/version"] as string
  }
}

const podsOf = async (version: string, group: string) =>
  (await kubectlJson("get", "pods", "-l", `serviceweaver/version=${version},serviceweaver/group=${group}`))
    .items as Array<any>

const readyPods = (pods: Array<any>) =>
  pods.filter((p) =>
    p.metadata.deletionTimestamp === undefined &&
    (p.status.conditions ?? []).some((c: any) => c.type === "Ready" && c.status === "True")
  )

/** `GET /who` of the `who` fixture: `{main, reverser}` as `variant/pod`. */
const who = async (url: string) => {
  const { body, status } = await get(`${url}/who`)
  assert.strictEqual(status, 200, body)
  const [main, reverser] = body.trim().split(" -> ")
  return { main: main!, reverser: reverser! }
}

const deleteVersion = async (version: string) => {
  await execFile(process.execPath, [weaver, "kube", "delete", version])
  await eventually(
    `version ${version} gone`,
    90,
    async () =>
      (await kubectlJson("get", "pods,services,deployments", "-l", `serviceweaver/version=${version}`)).items.length ===
        0 ||
      undefined
  )
}

let helloV1: Deployed

describe("weaver kube deploy on a real cluster", () => {
  beforeAll(async () => {
    assert.isDefined(registry, "run through npm run test:kube (scripts/test-kube.sh), which sets the cluster's env")
    await execFile(process.execPath, [
      weaver,
      "bundle",
      "--bundle-on-use",
      "--out",
      whoBinary,
      Path.join(import.meta.dirname, "who/main.ts")
    ])
    helloV1 = await deploy("hello")
    console.log(`weaver kube deploy --apply to first answer: ${helloV1.seconds.toFixed(1)} s`)
  }, 300_000)

  afterAll(() => Fs.rmSync(workDir, { recursive: true, force: true }))

  it("deploys hello: the listener Service answers, and every manifest passes a server-side dry run", async () => {
    const { url, version } = await listenerOf("hello")
    assert.strictEqual(version, helloV1.version)
    assert.strictEqual(url, helloV1.url)
    const { stdout } = await execFile("curl", ["-sS", "--max-time", "10", `${url}/hello?name=Weaver`])
    assert.strictEqual(stdout, "Hello, revaeW!\n")
    const dryRun = await kubectl(
      "apply",
      "--dry-run=server",
      "-f",
      Path.join(workDir, "hello-blue", `kube_${version}.yaml`)
    )
    const v = helloV1.version
    for (
      const object of [
        `configmap/hello-config-${v}`,
        `role.rbac.authorization.k8s.io/hello-endpoints-${v}`,
        `rolebinding.rbac.authorization.k8s.io/hello-endpoints-${v}`,
        `secret/hello-main-${v}-tls`,
        `deployment.apps/hello-main-${v}`,
        `service/hello-main-${v}`,
        `horizontalpodautoscaler.autoscaling/hello-main-${v}`,
        `deployment.apps/hello-reverser-${v}`,
        `horizontalpodautoscaler.autoscaling/hello-reverser-${v}`,
        "service/hello"
      ]
    ) assert.match(dryRun, new RegExp(`^${object.replace(/\./g, "\\.")} .*\\(server dry run\\)$`, "m"))
    const status = (await execFile(process.execPath, [weaver, "kube", "status"])).stdout
    assert.include(status, v)
    assert.match(status, /reverser .*│ 1\/1 /)
  }, 120_000)

  it("loses no request while the Reverser pod is deleted; a new pod serves and routing shows it", async () => {
    const url = helloV1.url
    const [old] = readyPods(await podsOf(helloV1.version, "reverser"))
    assert.isDefined(old)
    let stop = false
    const failures: Array<string> = []
    let answered = 0
    // Four callers in a loop, bounded in time (and stopped by `stop`).
    const deadline = Date.now() + 90_000
    const load = Promise.all(Array.from({ length: 4 }, async () => {
      while (!stop && Date.now() < deadline) {
        const answer = await get(`${url}/hello?name=abc`).catch((error) => ({ status: 0, body: String(error) }))
        if (answer.status === 200 && answer.body === "Hello, cba!\n") answered++
        else failures.push(`${answer.status} ${answer.body}`)
      }
    }))
    await sleep(1000)
    await kubectl("delete", "pod", old.metadata.name, "--wait=false")
    const fresh = await eventually(
      "a new Reverser pod, ready",
      60,
      async () =>
        readyPods(await podsOf(helloV1.version, "reverser")).find((p) => p.metadata.name !== old.metadata.name)
    )
    // The main pod's babysitter logs every routing change: the new pod's address alone must show.
    const [main] = readyPods(await podsOf(helloV1.version, "main"))
    await eventually(
      "routing to the new pod",
      30,
      async () =>
        (await kubectl("logs", main.metadata.name)).includes(
          `routing of hello/Reverser: ${fresh.status.podIP}:10000\"`
        ) ||
        undefined
    )
    await eventually(
      "the old pod gone",
      60,
      async () =>
        (await podsOf(helloV1.version, "reverser")).every((p) => p.metadata.name !== old.metadata.name) || undefined
    )
    // Only the new pod is left to serve: calls keep being answered.
    const answeredBefore = answered
    await sleep(2000)
    stop = true
    await load
    assert.deepStrictEqual(failures, [])
    assert.isAbove(answered - answeredBefore, 5)
    console.log(`requests answered while the Reverser pod was replaced: ${answered}`)
    await deleteVersion(helloV1.version)
  }, 240_000)

  it("scales a group to 3, and calls spread over all 3", async () => {
    const blue = await deploy("who", "blue")
    const [deployment] = (await kubectlJson(
      "get",
      "deployments",
      "-l",
      `serviceweaver/version=${blue.version},serviceweaver/group=reverser`
    ))
      .items
    await kubectl("scale", `deployment/${deployment.metadata.name}`, "--replicas=3")
    const pods = await eventually("3 ready Reverser pods", 90, async () => {
      const ready = readyPods(await podsOf(blue.version, "reverser"))
      return ready.length === 3 ? ready : undefined
    })
    const names = pods.map((p) => `blue/${p.metadata.name}`).sort()
    const seen = new Map<string, number>()
    await eventually("calls reaching all 3", 30, async () => {
      for (let i = 0; i < 30; i++) {
        const { reverser } = await who(blue.url)
        seen.set(reverser, (seen.get(reverser) ?? 0) + 1)
      }
      return names.every((name) => seen.has(name)) || undefined
    })
    const counts = [...seen.entries()].sort()
    console.log(`calls per Reverser pod: ${counts.map(([name, n]) => `${name}: ${n}`).join(", ")}`)
    assert.deepStrictEqual(counts.map(([name]) => name), names)
    await kubectl("scale", `deployment/${deployment.metadata.name}`, "--replicas=1")
  }, 300_000)

  it("deploys a second version beside the first: both run, no call crosses versions, the listener moves", async () => {
    const blue = await listenerOf("who")
    const green = await deploy("who", "green")
    assert.notStrictEqual(green.version, blue.version)
    const moved = await listenerOf("who")
    assert.strictEqual(moved.version, green.version)
    // Both versions run.
    for (const v of [blue.version, green.version]) {
      assert.isAbove(readyPods(await podsOf(v, "main")).length, 0)
      assert.isAbove(readyPods(await podsOf(v, "reverser")).length, 0)
    }
    // Through the listener, every request is answered by the new version, end to end.
    for (let i = 0; i < 40; i++) {
      const { main, reverser } = await who(moved.url)
      assert.match(main, /^green\//)
      assert.match(reverser, /^green\//)
    }
    // The old version, still running, calls only itself: its main pod asked directly.
    const [oldMain] = readyPods(await podsOf(blue.version, "main"))
    const port = JSON.parse(oldMain.spec.containers[0].env.find((e: any) => e.name === "WEAVER_KUBE_POD").value)
      .listeners[0].port
    for (let i = 0; i < 20; i++) {
      const { main, reverser } = await who(`http://${oldMain.status.podIP}:${port}`)
      assert.strictEqual(main, `blue/${oldMain.metadata.name}`)
      assert.match(reverser, /^blue\//)
    }
    // Deleting the old version leaves the new one serving.
    await deleteVersion(blue.version)
    assert.match((await who(moved.url)).main, /^green\//)
    await deleteVersion(green.version)
    assert.deepStrictEqual((await kubectlJson("get", "all", "-l", "serviceweaver/app")).items, [])
  }, 400_000)

  it("customkube: plugins decide where the pods' logs, metrics and traces go", async () => {
    // A collector in the cluster, the `telemetry` Service the example posts to: it counts what it receives.
    const collector = [
      "let spans = 0, metrics = 0",
      "require('http').createServer((req, res) => {",
      "  let body = ''; req.on('data', (c) => body += c); req.on('end', () => {",
      "    if (req.url === '/spans') spans += JSON.parse(body).length",
      "    if (req.url === '/metrics') metrics += JSON.parse(body).filter((m) => m.name.startsWith('serviceweaver_')).length",
      "    res.end(JSON.stringify({ spans, metrics }))",
      "  })",
      "}).listen(8080)"
    ].join("\n")
    const collectorFile = Path.join(workDir, "telemetry.json")
    Fs.writeFileSync(
      collectorFile,
      JSON.stringify({
        apiVersion: "v1",
        kind: "List",
        items: [
          {
            apiVersion: "apps/v1",
            kind: "Deployment",
            metadata: { name: "telemetry", labels: { app: "telemetry" } },
            spec: {
              selector: { matchLabels: { app: "telemetry" } },
              template: {
                metadata: { labels: { app: "telemetry" } },
                spec: {
                  containers: [{
                    name: "collector",
                    image: `${registry}/node-base:20`,
                    command: ["node", "-e", collector],
                    ports: [{ containerPort: 8080 }]
                  }]
                }
              }
            }
          },
          {
            apiVersion: "v1",
            kind: "Service",
            metadata: { name: "telemetry" },
            spec: { selector: { app: "telemetry" }, ports: [{ port: 8080, targetPort: 8080 }] }
          }
        ]
      })
    )
    await kubectl("apply", "-f", collectorFile)
    await kubectl("rollout", "status", "deployment/telemetry", "--timeout=120s")
    const telemetry = await kubectlJson("get", "service", "telemetry")
    const counts = async () =>
      JSON.parse((await get(`http://${telemetry.spec.clusterIP}:8080/count`)).body) as {
        spans: number
        metrics: number
      }

    const deployed = await deploy("hello", "blue", Path.join(root, "examples/customkube/dist/main.js"))
    // Sampled requests make spans (a request with a traceparent whose sampled flag is set is always traced).
    for (let i = 0; i < 20; i++) {
      const response = await fetch(`${deployed.url}/hello?name=t${i}`, {
        headers: { traceparent: `00-${"ab".repeat(15)}${String(i).padStart(2, "0")}-${"cd".repeat(8)}-01` }
      })
      assert.strictEqual(await response.text(), `Hello, ${[...`t${i}`].reverse().join("")}!\n`)
    }
    const received = await eventually("spans and metrics at the collector", 60, async () => {
      const now = await counts()
      return now.spans > 0 && now.metrics > 0 ? now : undefined
    })
    console.log(`customkube collector received: ${JSON.stringify(received)}`)
    // The logs plugin prints only warnings and errors, in Service Weaver's format: no JSON line in kubectl logs.
    const [main] = readyPods(await podsOf(deployed.version, "main"))
    assert.notInclude(await kubectl("logs", main.metadata.name), `{"app":"hello"`)
    await deleteVersion(deployed.version)
    await kubectl("delete", "deployment/telemetry", "service/telemetry", "--wait=true")
  }, 300_000)
  it("deploys the Online Boutique, one Deployment per component, and a shopper's flows answer", async () => {
    const boutique = Path.join(root, "examples/boutique")
    const dir = Path.join(workDir, "boutique")
    Fs.mkdirSync(dir, { recursive: true })
    Fs.writeFileSync(
      Path.join(dir, "weaver.toml"),
      Fs.readFileSync(Path.join(boutique, "weaver.toml"), "utf8").replace(
        `binary = "./dist/boutique.mjs"`,
        `binary = ${JSON.stringify(Path.join(boutique, "dist/boutique.mjs"))}`
      )
    )
    Fs.writeFileSync(
      Path.join(dir, "kube.yaml"),
      [
        "appConfig: weaver.toml",
        `repo: ${registry}`,
        `baseImage: ${baseImage}`,
        "listeners:",
        "  - name: boutique",
        "    public: true",
        "    serviceName: boutique",
        ""
      ].join("\n")
    )
    const started = performance.now()
    const { stdout } = await execFile(process.execPath, [
      weaver,
      "kube",
      "deploy",
      "--apply",
      "--out",
      dir,
      "kube.yaml"
    ], {
      cwd: dir,
      maxBuffer: 32 * 1024 * 1024
    })
    const version = /Kubernetes manifests of boutique version ([0-9a-f]{8})/.exec(stdout)?.[1]
    assert.isDefined(version, stdout)
    const url = new RegExp(`Listener boutique of version ${version}: Service boutique, http://([\\d.]+:80) `).exec(
      stdout
    )
      ?.[1]
    assert.isDefined(url, stdout)
    await eventually(
      "the storefront's first answer",
      120,
      async () => (await get(`http://${url}/`)).status === 200 || undefined
    )
    console.log(
      `boutique: weaver kube deploy --apply to first answer: ${((performance.now() - started) / 1000).toFixed(1)} s`
    )
    // The main group and the nine components' groups, each its own Deployment.
    const deployments = await kubectlJson("get", "deployments", "-l", `serviceweaver/version=${version}`)
    assert.strictEqual(deployments.items.length, 10)
    // The same checks as the boutique's own deployed-app test (another project: imported by path, not by tsc).
    const { shop } = (await import(Path.join(boutique, "test/utils/flows.ts"))) as {
      readonly shop: (address: string) => Promise<void>
    }
    await shop(url!)
    await Promise.all([shop(url!), shop(url!)])
    await deleteVersion(version!)
  }, 400_000)
})
