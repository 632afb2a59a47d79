/**
 * The kube deployer without a cluster: the kube config refused with file,
 * section and key before anything is built; the manifests of hello, checked
 * against the Kubernetes API's schemas; groups formed from the kube config
 * and weaver.toml; routing from a stream of EndpointSlice events.
 */
import { WeaverConfig } from "@effect-weaver/runtime"
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Yaml from "yaml"
import * as Deployer from "../src/Deployer.js"
import * as Endpoints from "../src/internal/endpoints.js"
import * as KubeConfig from "../src/KubeConfig.js"
import * as Manifests from "../src/Manifests.js"

const hello = Path.resolve(import.meta.dirname, "../../../examples/hello")

const tempDir = Effect.acquireRelease(
  Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "weaver-kube-test-"))),
  (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
)

/** A kube config for hello in a fresh directory (with hello's weaver.toml beside it); its path. */
const writeKube = (text: string) =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    const toml = (yield* Effect.promise(() => Fs.readFile(Path.join(hello, "weaver.toml"), "utf8")))
      .replace(`binary = "./dist/hello.mjs"`, `binary = ${JSON.stringify(Path.join(hello, "dist/hello.mjs"))}`)
    yield* Effect.promise(() => Fs.writeFile(Path.join(dir, "weaver.toml"), toml))
    const file = Path.join(dir, "kube.yaml")
    yield* Effect.promise(() => Fs.writeFile(file, text))
    return { dir, file }
  })

const parseError = (text: string) => {
  const result = KubeConfig.parse(text, "kube.yaml", "/app")
  assert.isTrue(Either.isLeft(result), `accepted: ${text}`)
  return (result as Either.Left<KubeConfig.KubeConfigError, unknown>).left.message
}

describe("KubeConfig", () => {
  it("decodes the seed's example, resolving appConfig against the file's directory", () => {
    const result = KubeConfig.parse(
      [
        "appConfig: weaver.toml",
        "repo: docker.io/mydockerid",
        "listeners:",
        "  - name: hello",
        "    public: true",
        "resourceSpec:",
        "  requests:",
        "    memory: \"64Mi\"",
        "groups:",
        "  - name: reverser-group",
        "    components:",
        "      - hello/Reverser",
        "    resourceSpec:",
        "      requests:",
        "        memory: \"256Mi\""
      ].join("\n"),
      "kube.yaml",
      "/app"
    )
    assert.isTrue(Either.isRight(result))
    const config = (result as Either.Right<never, KubeConfig.KubeConfig>).right
    assert.strictEqual(config.appConfig, "/app/weaver.toml")
    assert.deepStrictEqual(config.spec.groups?.[0]?.components, ["hello/Reverser"])
  })

  it("refuses mistakes naming the file, the section and the key", () => {
    assert.strictEqual(parseError("appConfig: w.toml\nreplicas: 3\n"), `kube.yaml: key "replicas": unknown key`)
    assert.strictEqual(parseError("repo: x\n"), `kube.yaml: key "appConfig": missing required key`)
    assert.strictEqual(
      parseError("appConfig: w.toml\nlisteners:\n  - name: hello\n    pubic: true\n"),
      `kube.yaml: section "listeners[0]" key "pubic": unknown key`
    )
    assert.strictEqual(
      parseError("appConfig: w.toml\nresourceSpec:\n  requests:\n    memory: 64 Mi\n"),
      `kube.yaml: section "resourceSpec" key "requests.memory": expected a resource quantity such as "250m", "64Mi" or "2", got "64 Mi"`
    )
    assert.strictEqual(
      parseError(
        "appConfig: w.toml\ngroups:\n  - name: r\n    components: [a/B]\n    resourceSpec: {limits: {cpu: lots}}\n"
      ),
      `kube.yaml: section "groups[0]" key "resourceSpec.limits.cpu": expected a resource quantity such as "250m", "64Mi" or "2", got "lots"`
    )
    assert.strictEqual(
      parseError("appConfig: w.toml\nscalingSpec: {minReplicas: 4, maxReplicas: 2}\n"),
      `kube.yaml: key "scalingSpec.maxReplicas": maxReplicas (2) is below minReplicas (4)`
    )
    assert.strictEqual(
      parseError("appConfig: w.toml\nlisteners: [{name: a, serviceName: web}, {name: b, serviceName: web}]\n"),
      `kube.yaml: section "listeners[1]" key "serviceName": Service web is also that of listeners[0]`
    )
    assert.strictEqual(
      parseError("appConfig: w.toml\ngroups: [{name: Big_Group, components: [a/B]}]\n"),
      `kube.yaml: section "groups[0]" key "name": expected a DNS label (lower-case letters, digits and "-", at most 63, starting with a letter), got "Big_Group"`
    )
    assert.match(parseError("appConfig: [unclosed\n"), /^kube\.yaml:2:1: malformed YAML: /)
  })
})

describe("Deployer.deploy", () => {
  // Each must be refused before any bundle or image is built.
  const refusals: ReadonlyArray<readonly [string, string, (file: string) => string]> = [
    [
      "an unknown key",
      "appConfig: weaver.toml\nlisteners:\n  - name: hello\n    exposed: true\n",
      (file) => `${file}: section "listeners[0]" key "exposed": unknown key`
    ],
    [
      "a bad resource quantity",
      "appConfig: weaver.toml\nresourceSpec:\n  limits:\n    memory: 1Gb\n",
      (file) =>
        `${file}: section "resourceSpec" key "limits.memory": expected a resource quantity such as "250m", "64Mi" or "2", got "1Gb"`
    ],
    [
      "a listener the app does not have",
      "appConfig: weaver.toml\nlisteners:\n  - name: hello\n  - name: admin\n    public: true\n",
      (file) => `${file}: section "listeners[1]" key "name": the application has no listener admin (it has: hello)`
    ],
    [
      "a group with a component the app does not have",
      "appConfig: weaver.toml\ngroups:\n  - name: backend\n    components: [hello/Reverser, hello/Missing]\n",
      (file) =>
        `${file}: section "groups[0]" key "components": the application has no component hello/Missing (it has: main, hello/Reverser)`
    ]
  ]
  for (const [what, text, expected] of refusals) {
    it.scoped(`refuses ${what} before anything is built`, () =>
      Effect.gen(function*() {
        const { file } = yield* writeKube(text)
        const built: Array<string> = []
        const error = yield* Effect.flip(Deployer.deploy({
          configFile: file,
          apply: false,
          bundle: (entry) => Effect.sync(() => void built.push(entry)),
          containerTool: "/nonexistent/container-tool"
        }))
        assert.strictEqual(error._tag, "KubeConfigError")
        assert.strictEqual(error.message, expected(file))
        assert.deepStrictEqual(built, [])
      }), 60_000)
  }

  it.scoped(
    "builds the image and writes valid manifests for hello: a Deployment, Service and autoscaler per group, the listener's Service",
    () =>
      Effect.gen(function*() {
        const { dir, file } = yield* writeKube(
          "appConfig: weaver.toml\nrepo: registry.test:5000/team\nlisteners:\n  - name: hello\n    public: true\n" +
            "resourceSpec:\n  requests:\n    memory: 64Mi\n" +
            "groups:\n  - name: backend\n    components: [hello/Reverser]\n    resourceSpec:\n      requests:\n        memory: 256Mi\n" +
            "    scalingSpec:\n      minReplicas: 2\n"
        )
        // A container tool that records what it was asked and what the image holds.
        const tool = Path.join(dir, "tool.sh")
        yield* Effect.promise(() =>
          Fs.writeFile(
            tool,
            `#!/bin/sh\necho "$@" >> ${dir}/tool.log\n[ "$1" = build ] && ls "$5" >> ${dir}/context.log\nexit 0\n`,
            { mode: 0o755 }
          )
        )
        const bundled: Array<string> = []
        const deployed = yield* Deployer.deploy({
          configFile: file,
          apply: false,
          outDir: dir,
          containerTool: tool,
          bundle: (entry, out) =>
            Effect.promise(() => Fs.copyFile(entry, out)).pipe(Effect.tap(() => bundled.push(entry))),
          log: () => Effect.void
        })
        assert.strictEqual(deployed.app, "hello")
        assert.match(deployed.version, /^[0-9a-f]{8}$/)
        assert.strictEqual(deployed.image, `registry.test:5000/team/hello:${deployed.version}`)
        assert.deepStrictEqual(deployed.groups.map((g) => [g.name, g.components]), [["main", ["main"]], ["backend", [
          "hello/Reverser"
        ]]])
        assert.strictEqual(bundled[0], Path.join(hello, "dist/hello.mjs"))
        const toolLog = yield* Effect.promise(() => Fs.readFile(Path.join(dir, "tool.log"), "utf8"))
        assert.match(toolLog, new RegExp(`^build --quiet -t ${deployed.image} .*\npush ${deployed.image}\n$`))
        const context = yield* Effect.promise(() => Fs.readFile(Path.join(dir, "context.log"), "utf8"))
        assert.deepStrictEqual(context.trim().split("\n"), ["Dockerfile", "app.mjs", "babysitter.mjs"])

        const text = yield* Effect.promise(() => Fs.readFile(deployed.file, "utf8"))
        const objects = Yaml.parseAllDocuments(text).map((doc) => doc.toJS()).filter((o) => o !== null)
        const named = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name)
        const v = deployed.version
        assert.deepStrictEqual(
          objects.map((o) => `${o.kind}/${o.metadata.name}`),
          [
            `ConfigMap/hello-config-${v}`,
            `Role/hello-endpoints-${v}`,
            `RoleBinding/hello-endpoints-${v}`,
            `Secret/hello-main-${v}-tls`,
            `Deployment/hello-main-${v}`,
            `Service/hello-main-${v}`,
            `HorizontalPodAutoscaler/hello-main-${v}`,
            `Secret/hello-backend-${v}-tls`,
            `Deployment/hello-backend-${v}`,
            `Service/hello-backend-${v}`,
            `HorizontalPodAutoscaler/hello-backend-${v}`,
            `Service/hello`
          ]
        )
        for (const object of objects) {
          assert.strictEqual(object.metadata.labels[Manifests.labels.app], "hello")
          assert.strictEqual(object.metadata.labels[Manifests.labels.version], v)
          assert.strictEqual(object.metadata.namespace, "default")
        }
        const backend = named("Deployment", `hello-backend-${v}`)
        assert.strictEqual(backend.spec.replicas, 2)
        const container = backend.spec.template.spec.containers[0]
        assert.strictEqual(container.image, deployed.image)
        assert.deepStrictEqual(container.resources, { requests: { memory: "256Mi" } })
        assert.deepStrictEqual(named("Deployment", `hello-main-${v}`).spec.template.spec.containers[0].resources, {
          requests: { memory: "64Mi" }
        })
        const pod = JSON.parse(container.env.find((e: any) => e.name === Manifests.podEnv).value) as Manifests.PodConfig
        assert.deepStrictEqual(pod.services, { main: `hello-main-${v}`, "hello/Reverser": `hello-backend-${v}` })
        assert.deepStrictEqual(pod.components, ["hello/Reverser"])
        assert.strictEqual(named("Service", `hello-backend-${v}`).spec.clusterIP, "None")
        const listener = named("Service", "hello")
        assert.strictEqual(listener.spec.type, "LoadBalancer")
        assert.deepStrictEqual(listener.spec.ports.map((p: any) => p.name), ["listener"], "a port of no protocol")
        assert.deepStrictEqual(listener.spec.selector, {
          [Manifests.labels.app]: "hello",
          [Manifests.labels.version]: v,
          [Manifests.labels.group]: "main"
        })
        assert.strictEqual(named("HorizontalPodAutoscaler", `hello-main-${v}`).apiVersion, "autoscaling/v2")
        const secret = named("Secret", `hello-backend-${v}-tls`)
        const credentials = JSON.parse(secret.stringData["credentials.json"])
        assert.match(credentials.certificate, /BEGIN CERTIFICATE/)
        assert.match(credentials.key, /BEGIN PRIVATE KEY/)
        assert.strictEqual((yield* Effect.promise(() => Fs.stat(deployed.file))).mode & 0o777, 0o600)
      }),
    120_000
  )
})

describe("Manifests", () => {
  const plan = (autoscaling: Manifests.Plan["autoscaling"], probe?: unknown): Manifests.Plan => ({
    app: "shop",
    deploymentId: "0123abcd-0000-0000-0000-000000000000",
    version: "0123abcd",
    namespace: "prod",
    image: "shop:0123abcd",
    useHostNetwork: false,
    configText: "[serviceweaver]\n",
    args: [],
    groups: [{
      name: "main",
      components: ["main", "shop/Cart"],
      objectName: "shop-main-0123abcd",
      scalingSpec: { minReplicas: 1, maxReplicas: 10 },
      ...(probe === undefined ? {} : { probeSpec: { readinessProbe: probe as any } }),
      storageSpec: { volumes: [], volumeMounts: [] }
    }],
    listeners: [],
    credentials: new Map([["main", "{}"]]),
    autoscaling
  })

  it("asks for autoscaling/v2beta2 where the cluster lacks v2, and validates either", () => {
    for (const version of ["autoscaling/v2", "autoscaling/v2beta2"] as const) {
      const manifests = Manifests.make(plan(version))
      assert.isTrue(Either.isRight(Manifests.validate(manifests)))
      const hpa = manifests.find((m) => m.object.kind === "HorizontalPodAutoscaler")!.object.toJSON() as any
      assert.strictEqual(hpa.apiVersion, version)
      assert.deepStrictEqual(hpa.spec.metrics, [{
        type: "Resource",
        resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 80 } }
      }])
    }
  })

  it("runs a singleton's group as exactly one pod: replicas 1, the Recreate strategy, no autoscaler", () => {
    const base = plan("autoscaling/v2")
    const manifests = Manifests.make({
      ...base,
      groups: [
        { ...base.groups[0]!, scalingSpec: { minReplicas: 3, maxReplicas: 10 } },
        {
          name: "leader",
          components: ["shop/Leader"],
          objectName: "shop-leader-0123abcd",
          singleton: true,
          scalingSpec: { minReplicas: 3, maxReplicas: 10 },
          storageSpec: { volumes: [], volumeMounts: [] }
        }
      ],
      credentials: new Map([["main", "{}"], ["leader", "{}"]])
    })
    assert.isTrue(Either.isRight(Manifests.validate(manifests)))
    const objects = manifests.map((m) => m.object.toJSON() as any)
    const deployment = (name: string) => objects.find((o) => o.kind === "Deployment" && o.metadata.name === name)
    assert.strictEqual(deployment("shop-leader-0123abcd").spec.replicas, 1)
    assert.deepStrictEqual(deployment("shop-leader-0123abcd").spec.strategy, { type: "Recreate" })
    assert.strictEqual(deployment("shop-main-0123abcd").spec.replicas, 3)
    assert.isUndefined(deployment("shop-main-0123abcd").spec.strategy)
    assert.deepStrictEqual(
      objects.filter((o) => o.kind === "HorizontalPodAutoscaler").map((o) => o.metadata.name),
      ["shop-main-0123abcd"]
    )
  })

  it("refuses a probe from the kube config that is not a Kubernetes Probe, naming the object", () => {
    const invalid = Manifests.validate(Manifests.make(plan("autoscaling/v2", { periodSeconds: "often" })))
    assert.isTrue(Either.isLeft(invalid))
    const left = (invalid as Either.Left<Manifests.Invalid, void>).left
    assert.strictEqual(left.object, "Deployment/shop-main-0123abcd")
    assert.include(left.reason, "readinessProbe/periodSeconds must be integer")
  })
})

describe("Deployer.formGroups", () => {
  const weaverToml = Either.getOrThrow(
    WeaverConfig.parse(`[serviceweaver]\ncolocate = [["shop/Leader", "shop/Audit"]]\n`, "weaver.toml", "/app")
  )
  const components = ["shop/Cart", "shop/Leader", "shop/Audit"]
  const form = (text: string) =>
    Deployer.formGroups(
      Either.getOrThrow(KubeConfig.parse(`appConfig: weaver.toml\n${text}`, "kube.yaml", "/app")),
      weaverToml,
      components,
      ["shop/Leader"]
    )

  it("marks the groups holding a singleton, co-located components included, and ignores the top-level scalingSpec", () => {
    const groups = Either.getOrThrow(form("scalingSpec:\n  minReplicas: 2\n  maxReplicas: 5\n"))
    assert.deepStrictEqual(groups.map((g) => [g.name, g.components, g.singletons]), [
      ["main", ["main"], []],
      ["cart", ["shop/Cart"], []],
      ["leader", ["shop/Leader", "shop/Audit"], ["shop/Leader"]]
    ])
  })

  it("refuses a scalingSpec of more than one replica for a singleton's group, naming file, section and key", () => {
    for (const [spec, key] of [["maxReplicas: 3", "maxReplicas"], ["minReplicas: 2", "minReplicas"]] as const) {
      const result = form(
        `groups:\n  - name: leaders\n    components: [shop/Leader]\n    scalingSpec:\n      ${spec}\n`
      )
      assert.isTrue(Either.isLeft(result))
      assert.strictEqual(
        (result as Either.Left<KubeConfig.KubeConfigError, unknown>).left.message,
        `kube.yaml: section "groups[0]" key "scalingSpec.${key}": group leaders holds the singleton shop/Leader, ` +
          `which runs exactly one replica: ${key} ${spec.split(" ")[1]} is not allowed (remove it, or set it to 1)`
      )
    }
    assert.isTrue(
      Either.isRight(
        form("groups:\n  - name: leaders\n    components: [shop/Leader]\n    scalingSpec:\n      maxReplicas: 1\n")
      )
    )
  })
})

describe("routing from EndpointSlices", () => {
  const slice = (name: string, endpoints: ReadonlyArray<readonly [string, boolean]>) => ({
    metadata: { name },
    endpoints: endpoints.map(([address, ready]) => ({ addresses: [address], conditions: { ready } }))
  })

  it.live("lists, follows the watch (ready pods only), and lists again after an error", () =>
    Effect.gen(function*() {
      let lists = 0
      const paths: Array<string> = []
      const api: Endpoints.Api = {
        getJson: (path) =>
          Effect.sync(() => {
            paths.push(path)
            if (path === "/apis/discovery.k8s.io") return { versions: [{ version: "v1" }, { version: "v1beta1" }] }
            lists++
            return lists === 1
              ? { metadata: { resourceVersion: "10" }, items: [slice("a", [["10.0.0.1", true], ["10.0.0.2", false]])] }
              : { metadata: { resourceVersion: "20" }, items: [slice("a", [["10.0.0.3", true]])] }
          }),
        watch: (path) => {
          paths.push(path)
          return path.includes("resourceVersion=10")
            ? Stream.fromIterable([
              { type: "MODIFIED", object: slice("a", [["10.0.0.1", true], ["10.0.0.2", true]]) },
              { type: "BOOKMARK", object: {} },
              { type: "ADDED", object: slice("b", [["10.0.0.9", true]]) },
              { type: "DELETED", object: slice("a", []) },
              { type: "ERROR", object: { code: 410, reason: "Gone" } }
            ])
            : Stream.never
        }
      }
      const errors: Array<string> = []
      const sets = yield* Endpoints.watchAddresses({
        api,
        namespace: "prod",
        service: "shop-cart-0123abcd",
        port: 10000,
        onError: (error) => Effect.sync(() => void errors.push(error.message))
      }).pipe(Stream.take(5), Stream.runCollect)
      assert.deepStrictEqual(Chunk.toReadonlyArray(sets), [
        ["10.0.0.1:10000"],
        ["10.0.0.1:10000", "10.0.0.2:10000"],
        ["10.0.0.1:10000", "10.0.0.2:10000", "10.0.0.9:10000"],
        ["10.0.0.9:10000"],
        ["10.0.0.3:10000"]
      ])
      assert.include(
        paths[1],
        "/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dshop-cart-0123abcd"
      )
      assert.strictEqual(errors.length, 1)
      assert.include(errors[0], "Gone")
    }))
})
