import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Ajv } from 'ajv';
import { validate as deploymentSchema } from 'kubernetes-models/_schemas/IoK8sApiAppsV1Deployment';
import { validate as hpaSchema } from 'kubernetes-models/_schemas/IoK8sApiAutoscalingV2HorizontalPodAutoscaler';
import { validate as configMapSchema } from 'kubernetes-models/_schemas/IoK8sApiCoreV1ConfigMap';
import { validate as secretSchema } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Secret';
import { validate as serviceSchema } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Service';
import { validate as serviceAccountSchema } from 'kubernetes-models/_schemas/IoK8sApiCoreV1ServiceAccount';
import { validate as ingressSchema } from 'kubernetes-models/_schemas/IoK8sApiNetworkingV1Ingress';
import { validate as networkPolicySchema } from 'kubernetes-models/_schemas/IoK8sApiNetworkingV1NetworkPolicy';
import { validate as pdbSchema } from 'kubernetes-models/_schemas/IoK8sApiPolicyV1PodDisruptionBudget';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import type { IIngress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { INetworkPolicyEgressRule } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyEgressRule';
import type { INetworkPolicyPeer } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyPeer';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import type { IService } from 'kubernetes-models/v1/Service';
import { loadConfig } from '../platform/config/config.ts';
import { optionSpecs } from '../platform/config/spec.ts';
import { coalesceValues, parseHelmYaml, parseManifests, type RenderedChart, renderChart } from '../testing/helm.ts';
import { startServer } from './server.ts';
// Last: their service probes run at import, with a timeout that the loading of the modules above must not eat.
import { adminQuery, engineSkip, openTestDatabase, type TestDatabase } from '../testing/engines.ts';
import { redisSkip, testRedisUrl } from '../testing/redis.ts';

/*
 * The Helm chart (deploy/helm/bulwark), rendered by src/testing/helm.ts with its default values and variants;
 * every manifest validated against the Kubernetes schemas kubernetes-models ships (and for fields they do not
 * know, which those validators let through); the security policy of the pod and the NetworkPolicy asserted;
 * the rendered environment started as a real production server; the Dockerfile checked as text (there is no
 * Docker engine on the build machines).
 */

const root = fileURLToPath(new URL('../../', import.meta.url));
const chartDir = join(root, 'deploy/helm/bulwark');
type Values = Record<string, unknown>;
type Manifest = Record<string, unknown>;
type LabelSelector = IDeployment['spec'] extends infer Spec ? NonNullable<Spec> extends { selector: infer S } ? S : never : never;

/** The values the assertions read (renderChart has checked them against values.schema.json). */
interface ChartValues {
  replicaCount: number;
  publicUrl: string;
  runAsUser: number;
  config: Record<string, string>;
  secrets: { existingSecret: string; values: Record<string, string> };
  service: { port: number };
  metrics: { enabled: boolean; port: number };
  autoscaling: { enabled: boolean };
  podDisruptionBudget: { enabled: boolean };
  networkPolicy: {
    enabled: boolean;
    ingressController: { namespaceSelector: LabelSelector; podSelector: LabelSelector };
    monitoring: { namespaceSelector: LabelSelector };
    dns: { namespaceSelector: LabelSelector; podSelector: LabelSelector };
    egress: Record<string, { ports: number[]; to: INetworkPolicyPeer[] }>;
    extraEgress: INetworkPolicyEgressRule[];
  };
}

const defaults = parseHelmYaml(readFileSync(join(chartDir, 'values.yaml'), 'utf8')) as Values;
const testValues = parseHelmYaml(readFileSync(join(chartDir, 'ci/test-values.yaml'), 'utf8')) as Values;
const withTestValues = (overrides: Values) => coalesceValues(testValues, overrides) as Values;
const render = (values: Values) => renderChart(chartDir, { values, releaseName: 'bulwark', namespace: 'auth' });
const manifestsOf = (values: Values): Manifest[] => parseManifests(render(values).files).map(({ manifest }) => manifest);

function must<T>(value: T | undefined | null, what: string): T {
  assert.ok(value !== undefined && value !== null, what);
  return value;
}
interface Kinds {
  ConfigMap: IConfigMap;
  Secret: ISecret;
  Service: IService;
  Deployment: IDeployment;
  PodDisruptionBudget: IPodDisruptionBudget;
  HorizontalPodAutoscaler: IHorizontalPodAutoscaler;
  NetworkPolicy: INetworkPolicy;
  Ingress: IIngress;
}
function only<K extends keyof Kinds>(manifests: Manifest[], kind: K): Kinds[K] {
  const found = manifests.filter((manifest) => manifest['kind'] === kind);
  assert.equal(found.length, 1, `exactly one ${kind}`);
  return found[0] as unknown as Kinds[K];
}
const maybe = <K extends keyof Kinds>(manifests: Manifest[], kind: K) => manifests.find((manifest) => manifest['kind'] === kind) as Kinds[K] | undefined;
const nameOf = (manifest: Manifest) => (manifest['metadata'] as { name?: string } | undefined)?.name;
const podSpec = (deployment: IDeployment): IPodSpec => must(deployment.spec?.template.spec, 'the Deployment has a pod spec');
const serverContainer = (deployment: IDeployment): IContainer => must(podSpec(deployment).containers[0], 'the server container');

// ---------------------------------------------------------------------------------------------------------
// Kubernetes schema validation.

type SchemaValidate = ((data: unknown) => boolean) & { errors?: { instancePath: string; keyword: string; params: object }[] | null };
const kubernetesSchemas: Record<string, SchemaValidate> = {
  'v1 ConfigMap': configMapSchema,
  'v1 Secret': secretSchema,
  'v1 Service': serviceSchema,
  'v1 ServiceAccount': serviceAccountSchema,
  'apps/v1 Deployment': deploymentSchema,
  'policy/v1 PodDisruptionBudget': pdbSchema,
  'autoscaling/v2 HorizontalPodAutoscaler': hpaSchema,
  'networking.k8s.io/v1 NetworkPolicy': networkPolicySchema,
  'networking.k8s.io/v1 Ingress': ingressSchema,
};

/**
 * What is wrong with a manifest by its Kubernetes schema. kubernetes-models' validators (Ajv, compiled from
 * the Kubernetes OpenAPI schemas) accept unknown fields, the commonest broken chart (`readinesProbe:`), so
 * the manifest is handed to them behind a proxy that records which fields each object's schema reads: the
 * compiled code reads every field its schema declares, so a field nobody read is one the schema lacks.
 */
function manifestProblems(manifest: object): string[] {
  const { apiVersion, kind: kindName } = manifest as { apiVersion?: unknown; kind?: unknown };
  const kind = `${String(apiVersion)} ${String(kindName)}`;
  const validate = kubernetesSchemas[kind];
  if (validate === undefined) return [`${kind} is not a kind this chart renders`];
  const seen = new Map<object, { path: string; read: Set<string>; proxy: object }>();
  const track = (value: unknown, path: string): unknown => {
    if (typeof value !== 'object' || value === null) return value;
    const known = seen.get(value);
    if (known !== undefined) return known.proxy;
    const read = new Set<string>();
    const proxy = new Proxy(value, {
      get(target, key, receiver) {
        const field: unknown = Reflect.get(target, key, receiver);
        if (typeof key !== 'string') return field;
        read.add(key);
        return Object.hasOwn(target, key) ? track(field, `${path}/${key}`) : field;
      },
      has(target, key) {
        if (typeof key === 'string') read.add(key);
        return Reflect.has(target, key);
      },
    });
    seen.set(value, { path, read, proxy });
    return proxy;
  };
  const problems = validate(track(manifest, '')) ? [] : (validate.errors ?? []).map((error) => `${error.instancePath || '/'}: ${error.keyword} ${JSON.stringify(error.params)}`);
  for (const [value, { path, read }] of seen) {
    if (Array.isArray(value)) continue;
    for (const key of Object.keys(value)) if (!read.has(key)) problems.push(`${path || '/'}: unknown field ${JSON.stringify(key)}`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------------
// The policy the chart promises, as assertions on rendered manifests.

/** Every container: not root, read-only root, no escalation, no capabilities; the pod: no token, no host access. */
function assertPodPolicy(deployment: IDeployment): void {
  const pod = podSpec(deployment);
  const podContext = must(pod.securityContext, 'a pod security context');
  assert.equal(podContext.runAsNonRoot, true);
  assert.ok(Number.isInteger(podContext.runAsUser) && (podContext.runAsUser ?? 0) > 0, 'a numeric, non-root uid');
  assert.equal(podContext.seccompProfile?.type, 'RuntimeDefault');
  assert.equal(pod.automountServiceAccountToken, false);
  assert.equal(pod.enableServiceLinks, false);
  for (const key of ['hostNetwork', 'hostPID', 'hostIPC', 'shareProcessNamespace'] as const) assert.notEqual(pod[key], true, key);
  for (const container of [...(pod.initContainers ?? []), ...pod.containers]) {
    const context = must(container.securityContext, `${container.name}: a security context`);
    assert.equal(context.runAsNonRoot, true, `${container.name}: runAsNonRoot`);
    assert.ok(Number.isInteger(context.runAsUser) && (context.runAsUser ?? 0) > 0, `${container.name}: numeric non-root runAsUser`);
    assert.equal(context.readOnlyRootFilesystem, true, `${container.name}: readOnlyRootFilesystem`);
    assert.equal(context.allowPrivilegeEscalation, false, `${container.name}: allowPrivilegeEscalation`);
    assert.notEqual(context.privileged, true, `${container.name}: privileged`);
    assert.deepEqual(context.capabilities, { drop: ['ALL'] }, `${container.name}: every capability dropped, none added`);
    assert.equal(context.seccompProfile?.type, 'RuntimeDefault', `${container.name}: seccomp`);
  }
  const volumes = pod.volumes ?? [];
  for (const volume of volumes) assert.ok(volume.emptyDir !== undefined || volume.secret !== undefined, `volume ${volume.name} is an emptyDir or a Secret (no hostPath)`);
  const mounts = new Map((serverContainer(deployment).volumeMounts ?? []).map((mount) => [mount.mountPath, mount.name]));
  for (const path of ['/tmp', '/var/lib/bulwark']) {
    assert.ok(volumes.find((volume) => volume.name === mounts.get(path))?.emptyDir !== undefined, `${path} is a writable emptyDir (the root filesystem is read-only)`);
  }
}

function assertProbes(deployment: IDeployment, scheme: string): void {
  const server = serverContainer(deployment);
  const portNames = new Set((server.ports ?? []).map((port) => port.name));
  for (const [probe, path] of [['startupProbe', '/healthz'], ['livenessProbe', '/healthz'], ['readinessProbe', '/readyz']] as const) {
    const get = must(server[probe]?.httpGet, `${probe} is an HTTP probe`);
    assert.equal(get.path, path, `${probe} on ${path}`);
    assert.ok(typeof get.port === 'string' && portNames.has(get.port), `${probe} targets a declared port`);
    assert.equal(get.scheme, scheme, `${probe} scheme`);
  }
  const { periodSeconds = 10, failureThreshold = 3 } = must(server.startupProbe, 'a startup probe');
  assert.ok(periodSeconds * failureThreshold >= 120, 'the startup probe leaves the migrations at least two minutes');
}

/**
 * Ingress only from the ingress controller's namespace (API port) and the monitoring namespace (metrics port);
 * egress only to DNS on 53 at the cluster resolver and to the stores named in values, on their ports.
 */
function assertNetworkPolicy(policy: INetworkPolicy, deployment: IDeployment, values: ChartValues): void {
  const np = values.networkPolicy;
  const spec = must(policy.spec, 'a policy spec');
  assert.deepEqual(spec.podSelector, deployment.spec?.selector, 'applies to the pods of the Deployment');
  assert.deepEqual([...(spec.policyTypes ?? [])].sort(), ['Egress', 'Ingress'], 'default deny in both directions');

  const controller: INetworkPolicyPeer = { namespaceSelector: np.ingressController.namespaceSelector };
  if (Object.keys(np.ingressController.podSelector).length > 0) controller.podSelector = np.ingressController.podSelector;
  const allowedIngress = [{ from: [controller], ports: [{ port: values.service.port, protocol: 'TCP' }] }];
  if (values.metrics.enabled) allowedIngress.push({ from: [{ namespaceSelector: np.monitoring.namespaceSelector }], ports: [{ port: values.metrics.port, protocol: 'TCP' }] });
  assert.deepEqual(spec.ingress, allowedIngress, 'ingress only from the selected namespaces, on the API and metrics ports');

  for (const rule of spec.egress ?? []) {
    assert.ok(rule.to !== undefined && rule.to.length > 0, 'every egress rule names its peers (no rule to anywhere)');
    for (const peer of rule.to) {
      for (const selector of [peer.namespaceSelector, peer.podSelector]) if (selector !== undefined) assert.ok(Object.keys(selector).length > 0, 'no empty selector (it would match everything)');
    }
  }
  const expected: INetworkPolicyEgressRule[] = [
    { to: [{ namespaceSelector: np.dns.namespaceSelector, podSelector: np.dns.podSelector }], ports: [{ port: 53, protocol: 'UDP' }, { port: 53, protocol: 'TCP' }] },
  ];
  for (const store of Object.keys(np.egress).sort()) {
    const { to, ports } = must(np.egress[store], store);
    if (to.length > 0) expected.push({ to, ports: ports.map((port) => ({ port, protocol: 'TCP' })) });
  }
  expected.push(...np.extraEgress);
  assert.deepEqual(spec.egress, expected, 'egress to DNS and the named stores only');
}

function assertSelectors(manifests: Manifest[], values: ChartValues): void {
  const deployment = only(manifests, 'Deployment');
  const spec = must(deployment.spec, 'a Deployment spec');
  const selector = must(spec.selector.matchLabels, 'matchLabels');
  const podLabels = spec.template.metadata?.labels ?? {};
  for (const [key, value] of Object.entries(selector)) assert.equal(podLabels[key], value, `pod label ${key} matches the selector`);
  assert.deepEqual(only(manifests, 'Service').spec?.selector, selector);
  const pdb = maybe(manifests, 'PodDisruptionBudget');
  assert.equal(pdb !== undefined, values.podDisruptionBudget.enabled);
  if (pdb !== undefined) assert.deepEqual(pdb.spec?.selector?.matchLabels, selector);
  const hpa = maybe(manifests, 'HorizontalPodAutoscaler');
  assert.equal(hpa !== undefined, values.autoscaling.enabled);
  if (hpa !== undefined) {
    assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata?.name });
    assert.equal(spec.replicas, undefined, 'with the autoscaler on, the Deployment leaves the replica count to it');
  } else {
    assert.equal(spec.replicas, values.replicaCount);
  }
  for (const constraint of podSpec(deployment).topologySpreadConstraints ?? []) assert.deepEqual(constraint.labelSelector?.matchLabels, selector);
}

/** The environment the server's container gets, as the kubelet builds it from envFrom (later sources win). */
function podEnvironment(manifests: Manifest[], existingSecrets: Record<string, Record<string, string>> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const source of serverContainer(only(manifests, 'Deployment')).envFrom ?? []) {
    if (source.configMapRef !== undefined) {
      const name = source.configMapRef.name;
      const configMap = manifests.find((manifest) => manifest['kind'] === 'ConfigMap' && nameOf(manifest) === name) as IConfigMap | undefined;
      Object.assign(env, must(configMap, `ConfigMap ${String(name)} is rendered`).data);
    } else {
      const name = must(source.secretRef?.name, 'a Secret reference');
      const secret = manifests.find((manifest) => manifest['kind'] === 'Secret' && nameOf(manifest) === name) as ISecret | undefined;
      const data = secret === undefined ? existingSecrets[name] : Object.fromEntries(Object.entries(secret.data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64').toString('utf8')]));
      Object.assign(env, must(data, `Secret ${name} is rendered or an existing one`));
    }
  }
  return env;
}

/** Everything each variant must satisfy. */
function assertRelease(rendered: RenderedChart): void {
  assert.deepEqual(rendered.printedNil, [], 'no template printed a nil (a value path with a typo renders empty in Helm)');
  const manifests = parseManifests(rendered.files).map(({ manifest }) => manifest);
  for (const manifest of manifests) assert.deepEqual(manifestProblems(manifest), [], `${String(manifest['kind'])} meets its Kubernetes schema`);
  const names = manifests.map((manifest) => `${String(manifest['kind'])}/${String(nameOf(manifest))}`);
  assert.equal(new Set(names).size, names.length, 'names are unique per kind');
  const values = rendered.values as unknown as ChartValues;
  const deployment = only(manifests, 'Deployment');
  assertPodPolicy(deployment);
  assertProbes(deployment, values.config['BULWARK_TLS'] === 'on' ? 'HTTPS' : 'HTTP');
  assertSelectors(manifests, values);
  const policy = maybe(manifests, 'NetworkPolicy');
  assert.equal(policy !== undefined, values.networkPolicy.enabled);
  if (policy !== undefined) assertNetworkPolicy(policy, deployment, values);
  assert.equal(maybe(manifests, 'Secret') === undefined, values.secrets.existingSecret !== '', 'the chart makes the Secret unless one is named');
  // The existing Secret stands in with the values its owner would put there.
  const env = podEnvironment(manifests, { [values.secrets.existingSecret]: values.secrets.values });
  assert.equal(env['BULWARK_ENV'], 'production');
  assert.doesNotThrow(() => loadConfig(env), 'the environment is a valid configuration');
  assert.ok(rendered.notes?.includes(values.publicUrl), 'NOTES name the public address');
}

// ---------------------------------------------------------------------------------------------------------

const rootKey = randomBytes(32).toString('base64');
const variants = {
  testValues,
  existingSecret: withTestValues({ secrets: { existingSecret: 'bulwark-env' } }),
  envRootKey: withTestValues({
    rootKey: { provider: 'env' },
    secrets: { values: { BULWARK_ROOT_KEY: rootKey, BULWARK_VAULT_TOKEN: '' } },
    networkPolicy: { egress: { kms: { to: [] } } },
  }),
  noAutoscaling: withTestValues({ autoscaling: { enabled: false }, replicaCount: 2 }),
  metrics: withTestValues({ metrics: { enabled: true } }),
  everything: withTestValues({
    ingress: { enabled: true, className: 'nginx', host: 'auth.example.com', tlsSecretName: 'auth-example-com-tls' },
    secretFiles: { existingSecret: 'bulwark-files' },
    config: { BULWARK_TLS: 'on', BULWARK_NATS_CREDS_FILE: '/run/bulwark/secrets/bulwark.creds' },
    image: { digest: `sha256:${'a'.repeat(64)}` },
    secrets: { values: { BULWARK_NATS_URL: 'tls://nats.messaging.svc:4222' } },
    podDisruptionBudget: { enabled: false },
    networkPolicy: {
      ingressController: { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'ingress-nginx' } } },
      egress: { nats: { to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'messaging' } } }] } },
    },
  }),
  openNetwork: withTestValues({ networkPolicy: { enabled: false }, rateLimits: { allowMemoryBuckets: true }, secrets: { values: { BULWARK_REDIS_URL: '' } } }),
};
const variantNames: Record<keyof typeof variants, string> = {
  testValues: 'the test values: Vault transit, a chart-made Secret, autoscaling, NetworkPolicy',
  existingSecret: 'an existing Secret',
  envRootKey: 'the root key from the Secret (env provider)',
  noAutoscaling: 'autoscaling off',
  metrics: 'metrics on, from the monitoring namespace',
  everything: 'an Ingress, Secret files, HTTPS in the pod, NATS, an image digest, no PDB',
  openNetwork: 'no NetworkPolicy, per-pod rate limits',
};

describe('the Helm chart', () => {
  for (const [key, values] of Object.entries(variants)) {
    it(`renders valid manifests that keep the policy: ${variantNames[key as keyof typeof variants]}`, () => {
      assertRelease(render(values));
    });
  }

  it('renders what each variant is about', () => {
    const existing = manifestsOf(variants.existingSecret);
    const existingDeployment = only(existing, 'Deployment');
    assert.equal(serverContainer(existingDeployment).envFrom?.[1]?.secretRef?.name, 'bulwark-env');
    assert.equal(existingDeployment.spec?.template.metadata?.annotations?.['checksum/secret'], undefined, 'no checksum of a Secret the chart does not make');

    const env = podEnvironment(manifestsOf(variants.envRootKey));
    assert.deepEqual([env['BULWARK_ROOT_KEY_PROVIDER'], env['BULWARK_ROOT_KEY'], env['BULWARK_VAULT_ADDR']], ['env', rootKey, undefined]);
    assert.equal(env['BULWARK_VAULT_TOKEN'], undefined, 'empty secret values are left out');
    const vault = podEnvironment(manifestsOf(testValues));
    assert.deepEqual([vault['BULWARK_ROOT_KEY_PROVIDER'], vault['BULWARK_VAULT_ADDR'], vault['BULWARK_VAULT_TOKEN']], ['vault-transit', 'https://vault.internal.example.com:8200', 'hvs.example-token']);

    const metrics = manifestsOf(variants.metrics);
    assert.deepEqual(only(metrics, 'Service').spec?.ports?.map((port) => port.name), ['http', 'metrics']);
    const metricsEnv = podEnvironment(metrics);
    assert.deepEqual([metricsEnv['BULWARK_METRICS_HOST'], metricsEnv['BULWARK_METRICS_PORT']], ['0.0.0.0', '9090']);

    const everything = manifestsOf(variants.everything);
    const pod = podSpec(only(everything, 'Deployment'));
    const server = serverContainer(only(everything, 'Deployment'));
    assert.equal(server.image, `registry.example.com/bulwark@sha256:${'a'.repeat(64)}`);
    assert.equal(pod.initContainers?.[0]?.name, 'secret-files');
    assert.deepEqual(server.volumeMounts?.find((mount) => mount.name === 'secret-files'), { name: 'secret-files', mountPath: '/run/bulwark/secrets', readOnly: true });
    assert.equal(pod.volumes?.find((volume) => volume.name === 'secret-files')?.emptyDir?.medium, 'Memory');
    assert.deepEqual(only(everything, 'Ingress').spec?.tls, [{ hosts: ['auth.example.com'], secretName: 'auth-example-com-tls' }]);

    const checksum = (values: Values) => only(manifestsOf(values), 'Deployment').spec?.template.metadata?.annotations?.['checksum/config'];
    assert.notEqual(checksum(testValues), checksum(withTestValues({ config: { BULWARK_LOG_LEVEL: 'debug' } })), 'a changed setting changes the pod template, so the pods roll');
  });

  it('fails the render with the reason when a required setting is missing', () => {
    const cases: [string, Values, RegExp][] = [
      ['defaults only', defaults, /publicUrl is required/],
      ['no image', withTestValues({ image: { repository: '' } }), /image.repository is required/],
      ['no database', withTestValues({ secrets: { values: { BULWARK_DATABASE_URL: '' } } }), /BULWARK_DATABASE_URL is required/],
      ['no Vault token', withTestValues({ secrets: { values: { BULWARK_VAULT_TOKEN: '' } } }), /BULWARK_VAULT_TOKEN is required/],
      ['env provider without the key', withTestValues({ rootKey: { provider: 'env' } }), /BULWARK_ROOT_KEY is required/],
      ['no Redis', withTestValues({ secrets: { values: { BULWARK_REDIS_URL: '' } } }), /BULWARK_REDIS_URL is required/],
      ['backups to the emptyDir', withTestValues({ config: { BULWARK_BACKUP_TARGETS: null } }), /BULWARK_BACKUP_TARGETS is required/],
      ['no egress to PostgreSQL', withTestValues({ networkPolicy: { egress: { postgresql: { to: [] } } } }), /egress.postgresql.to is required/],
      ['no egress to the KMS', withTestValues({ networkPolicy: { egress: { kms: { to: [] } } } }), /egress.kms.to is required/],
      ['an Ingress without TLS', withTestValues({ ingress: { enabled: true, host: 'auth.example.com' } }), /tlsSecretName is required/],
    ];
    for (const [name, values, message] of cases) assert.throws(() => render(values), message, name);
    assert.doesNotThrow(() => render(withTestValues({ config: { BULWARK_BACKUP_TARGETS: null, BULWARK_BACKUP_SCHEDULE: 'off' } })), 'backups off is a choice');
  });
});

describe('validating the manifests', () => {
  const deployment = () => structuredClone(only(manifestsOf(testValues), 'Deployment'));

  it('fails a broken manifest: a wrong type, an unknown field, a missing required field (and passes it intact)', () => {
    const problems = (change: (server: IContainer, pod: IPodSpec) => void) => {
      const broken = deployment();
      change(serverContainer(broken), podSpec(broken));
      return manifestProblems(broken).join('\n');
    };
    assert.equal(problems(() => undefined), '');
    assert.match(problems((server) => Object.assign(must(server.ports?.[0], 'a port'), { containerPort: '8080' })), /containers\/0\/ports\/0\/containerPort: type/);
    assert.match(problems((server) => Object.assign(server, { readinesProbe: server.readinessProbe })), /containers\/0: unknown field "readinesProbe"/);
    assert.match(problems((_, pod) => Object.assign(must(pod.securityContext, 'a security context'), { runAsNonroot: true })), /securityContext: unknown field "runAsNonroot"/);
    assert.match(problems((server) => Reflect.deleteProperty(server, 'name')), /required .*"missingProperty":"name"/);
    assert.match(manifestProblems({ apiVersion: 'apps/v1beta1', kind: 'Deployment' }).join('\n'), /not a kind this chart renders/);
  });

  it('the policy assertions fail a weakened pod or NetworkPolicy', () => {
    const context = (pod: IPodSpec) => must(pod.containers[0]?.securityContext, 'a security context');
    const cases: [string, (pod: IPodSpec) => void][] = [
      ['root', (pod) => (context(pod).runAsUser = 0)],
      ['a writable root', (pod) => (context(pod).readOnlyRootFilesystem = false)],
      ['escalation', (pod) => (context(pod).allowPrivilegeEscalation = true)],
      ['a capability', (pod) => (context(pod).capabilities = { drop: ['ALL'], add: ['NET_ADMIN'] })],
      ['a token', (pod) => (pod.automountServiceAccountToken = true)],
      ['a hostPath', (pod) => pod.volumes?.push({ name: 'host', hostPath: { path: '/' } })],
    ];
    for (const [name, weaken] of cases) {
      const weakened = deployment();
      weaken(podSpec(weakened));
      assert.throws(() => assertPodPolicy(weakened), assert.AssertionError, name);
    }
    const manifests = manifestsOf(testValues);
    const values = render(testValues).values as unknown as ChartValues;
    const policy = structuredClone(only(manifests, 'NetworkPolicy'));
    assert.doesNotThrow(() => assertNetworkPolicy(policy, only(manifests, 'Deployment'), values));
    policy.spec?.egress?.push({ ports: [{ port: 443, protocol: 'TCP' }] });
    assert.throws(() => assertNetworkPolicy(policy, only(manifests, 'Deployment'), values), /names its peers/);
  });
});

describe('values.schema.json', () => {
  const schema = JSON.parse(readFileSync(join(chartDir, 'values.schema.json'), 'utf8')) as {
    properties: { config: { propertyNames: { enum: string[] } }; secrets: { properties: { values: { propertyNames: { enum: string[] } } } } };
  };

  it('accepts values.yaml and the test values', () => {
    const validate = new Ajv({ allErrors: true, strictSchema: true, strictTypes: true }).compile(schema);
    assert.ok(validate(defaults), JSON.stringify(validate.errors));
    assert.ok(validate(coalesceValues(defaults, testValues)), JSON.stringify(validate.errors));
  });

  it('refuses bad overrides, as helm install would', () => {
    const cases: [string, Values][] = [
      ['a wrong type', { replicaCount: 'three' }],
      ['an unknown key', { replicas: 3 }],
      ['a secret in the ConfigMap', { config: { BULWARK_DATABASE_URL: 'postgres://u:p@db/bulwark' } }],
      ['a typo in an option', { config: { BULWARK_LOG_LEVL: 'debug' } }],
      ['an option the chart sets', { config: { BULWARK_ENV: 'development' } }],
      ['a number where Bulwark reads a string', { config: { BULWARK_DATABASE_POOL_MAX: 20 } }],
      ['an unknown secret', { secrets: { values: { BULWARK_DATABASE_PASSWORD: 'x' } } }],
      ['the local key file', { rootKey: { provider: 'local-file' } }],
      ['root', { runAsUser: 0 }],
      ['a LoadBalancer past the ingress controller', { service: { type: 'LoadBalancer' } }],
      ['plain http', { publicUrl: 'http://auth.example.com' }],
      ['a short digest', { image: { digest: 'sha256:abc' } }],
      ['every namespace as the ingress source', { networkPolicy: { ingressController: { namespaceSelector: { matchLabels: null } } } }],
      ['an egress rule to anywhere', { networkPolicy: { extraEgress: [{ ports: [{ port: 443 }] }] } }],
      ['both PDB bounds', { podDisruptionBudget: { minAvailable: 2 } }],
    ];
    for (const [name, override] of cases) assert.throws(() => render(withTestValues(override)), /values don't meet the specifications of the schema/, name);
  });

  it('places every configuration option in config, in secrets or in the chart, and secret ones never in the ConfigMap', () => {
    const configNames = new Set(schema.properties.config.propertyNames.enum);
    const secretNames = new Set(schema.properties.secrets.properties.values.propertyNames.enum);
    const specSecrets = optionSpecs.filter((spec) => spec.secret === true).map((spec) => spec.env).sort();
    assert.deepEqual([...secretNames].sort(), specSecrets, 'secrets.values takes exactly the secret options');
    assert.deepEqual(Object.keys((defaults['secrets'] as { values: object }).values).sort(), specSecrets, 'values.yaml lists each of them');
    // What the ConfigMap holds beyond values.config, over variants that make the chart set each of its own.
    const chartSet = new Set<string>();
    for (const values of [testValues, variants.envRootKey, variants.metrics, variants.openNetwork, withTestValues({ rootKey: { vault: { namespace: 'admin' } } })]) {
      const rendered = render(values);
      const given = (rendered.values as unknown as ChartValues).config;
      const configMap = only(parseManifests(rendered.files).map(({ manifest }) => manifest), 'ConfigMap');
      for (const key of Object.keys(configMap.data ?? {})) if (!Object.hasOwn(given, key)) chartSet.add(key);
    }
    // BULWARK_TOKEN_ISSUER defaults to publicUrl and may be set in config; the local key file is not offered.
    chartSet.delete('BULWARK_TOKEN_ISSUER');
    chartSet.add('BULWARK_ALLOW_LOCAL_ROOT_KEY');
    for (const { env } of optionSpecs) {
      const places = [configNames.has(env) && 'config', secretNames.has(env) && 'secrets', chartSet.has(env) && 'the chart'].filter((place) => place !== false);
      assert.equal(places.length, 1, `${env} belongs to exactly one of config, secrets, the chart (found: ${places.join(', ') || 'none'}); a new option goes into values.schema.json`);
    }
    const known = new Set(optionSpecs.map((spec) => spec.env));
    for (const name of [...configNames, ...chartSet]) assert.ok(known.has(name), `${name} is a configuration option`);
  });

  it('Chart.yaml names the package version as appVersion', () => {
    const chart = parseHelmYaml(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')) as { apiVersion: string; appVersion: string };
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    assert.equal(chart.appVersion, pkg.version);
    assert.equal(chart.apiVersion, 'v2');
  });
});

describe('the rendered environment, started as a production server', { skip: engineSkip('postgres') || redisSkip() }, () => {
  const login = `bulwark_chart_login_${randomBytes(4).toString('hex')}`;
  let storage: TestDatabase;
  let dataDir: string;
  let env: Record<string, string>;

  before(async () => {
    storage = await openTestDatabase('postgres');
    await adminQuery(`CREATE ROLE ${login} LOGIN IN ROLE bulwark_app`);
    dataDir = mkdtempSync(join(tmpdir(), 'bulwark-chart-'));
    const ownerUrl = must(storage.ownerUrl, 'a PostgreSQL database');
    const loginUrl = new URL(ownerUrl);
    loginUrl.username = login;
    const values = withTestValues({
      rootKey: { provider: 'env' },
      config: { BULWARK_BACKUP_TARGETS: `local=file://${join(dataDir, 'backups')}` },
      secrets: { values: { BULWARK_DATABASE_URL: loginUrl.toString(), BULWARK_DATABASE_ADMIN_URL: ownerUrl, BULWARK_REDIS_URL: testRedisUrl, BULWARK_ROOT_KEY: rootKey, BULWARK_VAULT_TOKEN: '' } },
      networkPolicy: { egress: { kms: { to: [] } } },
    });
    // The chart's environment as the pod gets it; only where it listens and logs is this machine's.
    env = { ...podEnvironment(manifestsOf(values)), BULWARK_HOST: '127.0.0.1', BULWARK_PORT: '0', BULWARK_DATA_DIR: dataDir, BULWARK_LOG_LEVEL: 'silent' };
  });
  after(async () => {
    await storage.close();
    await adminQuery(`DROP ROLE IF EXISTS ${login}`);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('starts in production (PostgreSQL through a member of the app role, Redis, the env root key) and is ready', async () => {
    assert.equal(env['BULWARK_ENV'], 'production');
    const server = await startServer(loadConfig(env), { banner: () => undefined });
    try {
      const response = await fetch(new URL('/readyz', server.address));
      assert.equal(response.status, 200);
      assert.equal(((await response.json()) as { status: string }).status, 'ready');
    } finally {
      await server.stop();
    }
  });

  it('and the same environment without Redis is refused, which is why the chart requires it', async () => {
    const withoutRedis = { ...env };
    delete withoutRedis['BULWARK_REDIS_URL'];
    await assert.rejects(startServer(loadConfig(withoutRedis), { banner: () => undefined }), /rate limits in process memory/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// The Dockerfile, as text.

/** Instructions of a Dockerfile: continuation lines joined, comments dropped. */
function instructions(text: string): { op: string; args: string }[] {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const [op = '', ...rest] = line.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(' ') };
    });
}

/** Docker's .dockerignore matching (moby/patternmatcher): the last matching pattern decides; a pattern also matches a file's parent folders. */
function dockerIgnored(patterns: string[], file: string): boolean {
  const parents = file.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const raw of patterns) {
    const exclusion = raw.startsWith('!');
    const pattern = (exclusion ? raw.slice(1) : raw).replace(/^\/+/, '').replace(/\/+$/, '');
    const regex = new RegExp(
      `^${pattern
        .split(/(\*\*\/|\*\*|\*|\?)/)
        .map((part) => ({ '**/': '(?:.*/)?', '**': '.*', '*': '[^/]*', '?': '[^/]' })[part] ?? part.replace(/[.+^${}()|[\]\\]/g, '\\$&'))
        .join('')}$`,
    );
    if (parents.some((path) => regex.test(path))) ignored = !exclusion;
  }
  return ignored;
}

/** The files the server loads: the import graph from bin/bulwark.js, and folders it reads through import.meta.url. */
function runtimeFiles(): Set<string> {
  const files = new Set<string>();
  const pending = [join(root, 'bin/bulwark.js')];
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    if (files.has(file)) continue;
    assert.ok(existsSync(file), `${relative(root, file)} exists`);
    files.add(file);
    const source = readFileSync(file, 'utf8');
    const specifiers = [...source.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"](\.[^'"]+)['"]|import\s*\(?\s*['"](\.[^'"]+)['"]/g)].map((match) => match[1] ?? match[2] ?? '');
    for (const specifier of specifiers) pending.push(resolve(dirname(file), specifier));
    for (const match of source.matchAll(/new URL\(\s*['"](\.[^'"]+)['"]\s*,\s*import\.meta\.url\s*\)/g)) {
      const target = resolve(dirname(file), match[1] ?? '');
      for (const entry of statSync(target).isDirectory() ? readdirSync(target) : ['']) files.add(join(target, entry));
    }
  }
  return files;
}

function repositoryFiles(dir = root): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return ['node_modules', '.git'].includes(entry.name) ? [relative(root, path)] : repositoryFiles(path);
    return [relative(root, path)];
  });
}

describe('the Dockerfile (checked as text: no Docker engine on this machine)', () => {
  const steps = instructions(readFileSync(join(root, 'Dockerfile'), 'utf8'));
  const globalArgs = new Map(steps.slice(0, steps.findIndex((step) => step.op === 'FROM')).filter((step) => step.op === 'ARG').map((step) => step.args.split('=') as [string, string]));
  const stages: { from: string; name: string | undefined; steps: { op: string; args: string }[] }[] = [];
  for (const step of steps) {
    if (step.op === 'FROM') {
      const [image = '', as, name] = step.args.split(/\s+/);
      stages.push({ from: image.replace(/\$\{(\w+)\}/g, (_, arg: string) => globalArgs.get(arg) ?? ''), name: as?.toUpperCase() === 'AS' ? name : undefined, steps: [] });
    } else {
      stages.at(-1)?.steps.push(step);
    }
  }
  const runtime = stages.at(-1);

  it('builds in stages: production dependencies with npm ci --omit=dev, then node:24-bookworm-slim without npm work', () => {
    assert.ok(stages.length >= 2, 'multi-stage');
    const deps = stages.find((stage) => stage.steps.some((step) => step.op === 'RUN' && /\bnpm ci\b.*--omit=dev/.test(step.args)));
    assert.ok(deps?.name !== undefined && deps !== runtime, 'a named dependency stage runs npm ci --omit=dev');
    assert.equal(runtime?.from, 'node:24-bookworm-slim');
    assert.ok(!runtime.steps.some((step) => step.op === 'RUN' && /\bnpm\b/.test(step.args)), 'the runtime stage runs no npm');
    assert.ok(runtime.steps.some((step) => step.op === 'COPY' && step.args === `--from=${deps.name} /app/node_modules ./node_modules`));
    const copied = runtime.steps.filter((step) => step.op === 'COPY' && !step.args.startsWith('--from')).map((step) => step.args.split(/\s+/)[0]);
    assert.deepEqual(copied.sort(), ['bin', 'package.json', 'src'], 'only package.json, bin/ and src/ from the context');
    assert.match(runtime.steps.find((step) => step.op === 'HEALTHCHECK')?.args ?? '', /\/healthz/);
    assert.equal(runtime.steps.find((step) => step.op === 'ENTRYPOINT')?.args, '["node", "bin/bulwark.js"]');
  });

  it("runs as a numeric, non-root user: the chart's runAsUser", () => {
    const users = runtime?.steps.filter((step) => step.op === 'USER') ?? [];
    const user = users.at(-1)?.args ?? '';
    assert.match(user, /^[0-9]+(:[0-9]+)?$/, 'numeric uid[:gid]');
    const uid = Number(user.split(':')[0]);
    assert.notEqual(uid, 0);
    assert.equal(uid, defaults['runAsUser']);
  });

  it('.dockerignore lets in everything the server loads, and no tests, helpers or other files', () => {
    const patterns = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'));
    const context = repositoryFiles().filter((file) => !dockerIgnored(patterns, file));
    const needed = [...runtimeFiles()].map((file) => relative(root, file));
    assert.ok(needed.length > 100 && needed.includes('src/platform/db/migrations/0001_foundation.sql'), `the import graph was followed (${needed.length} files)`);
    for (const file of needed) assert.ok(context.includes(file), `${file} is loaded by the server and must be in the build context`);
    for (const file of context) {
      assert.ok(/^(package\.json|package-lock\.json|bin\/|src\/)/.test(file), `${file} stays out of the build context`);
      assert.ok(!/\.test\.ts$|^src\/testing\/|-fake\.ts$/.test(file), `${file}: no test code in the image`);
    }
    assert.ok(dockerIgnored(patterns, 'src/server/helm-chart.test.ts') && !dockerIgnored(patterns, 'src/server/server.ts'), 'control: the matcher tells the two apart');
  });
});
