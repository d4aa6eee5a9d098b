import { Type } from 'typebox';
import { pageOf, pageQuery } from '../../platform/http/pagination.ts';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { tenantParams } from '../tenancy/schemas.ts';
import {
  putSecretBody,
  registeredService,
  registerServiceBody,
  sealedCopyParams,
  sealedCopyQuery,
  sealedSecret,
  secretMetadata,
  secretPage,
  secretPageQuery,
  secretParams,
  service,
  serviceParams,
} from './schemas.ts';
import type { SecretsService, ServiceRegistry } from './service.ts';

const tags = ['secrets'];
const servicesPath = '/v1/services';
const secretsPath = '/v1/tenants/:tenantId/secrets';
// A 64 KiB value may grow to six times that as JSON escapes (`\u0000`), plus the readers.
const putBodyLimit = 6 * 64 * 1024 + 4096;

export interface SecretsRouteServices {
  registry: ServiceRegistry;
  secrets: SecretsService;
  /** BULWARK_BODY_LIMIT_BYTES: no route reads more. */
  bodyLimitBytes: number;
}

/**
 * Write-only secrets: the services that read them (operator routes), a tenant's secrets (metadata only, in
 * and out: no route answers a value), and the one route where a service fetches its own sealed copy.
 */
export const secretsRoutes: RoutePlugin<SecretsRouteServices> = async (app, { registry, secrets, bodyLimitBytes }) => {
  app.post(
    servicesPath,
    {
      config: { auth: 'operator', permission: 'platform:services:write' },
      bodyLimit: 8 * 1024,
      schema: {
        tags,
        summary: 'Register a service',
        description:
          'A service that reads secrets sealed to its X25519 public key (`bulwark service keygen` makes the key pair; the private key stays with the service). The answer carries the service credential, once: the service reads its copies with it. 409 when an active service has the name or the key.',
        body: registerServiceBody,
        response: { 201: registeredService },
      },
    },
    async (request, reply) => reply.code(201).send(await registry.register(request.body)),
  );

  app.get(
    servicesPath,
    {
      config: { auth: 'operator', permission: 'platform:services:read' },
      schema: { tags, summary: 'List services', description: 'Keyset-paged by id; retired services included. Never a credential.', querystring: pageQuery, response: { 200: pageOf(service) } },
    },
    async (request) => registry.list(request.query.limit ?? 50, request.query.cursor),
  );

  app.get(
    `${servicesPath}/:serviceId`,
    { config: { auth: 'operator', permission: 'platform:services:read' }, schema: { tags, summary: 'Get a service', params: serviceParams, response: { 200: service } } },
    async (request) => registry.get(request.params.serviceId),
  );

  app.delete(
    `${servicesPath}/:serviceId`,
    {
      config: { auth: 'operator', permission: 'platform:services:write' },
      schema: {
        tags,
        summary: 'Retire a service',
        description:
          'Its credential stops working at once and it reads nothing more; no secret can name it as a reader again. To replace a lost or rotated key, register the service anew and have each tenant write its secrets again naming the new id.',
        params: serviceParams,
        response: { 200: service },
      },
    },
    async (request) => registry.retire(request.params.serviceId),
  );

  app.get(
    secretsPath,
    {
      config: { auth: 'tenant', permission: 'secrets:read' },
      schema: { tags, summary: 'List secrets', description: 'Metadata only, ordered by name: no route returns a value.', params: tenantParams, querystring: secretPageQuery, response: { 200: secretPage } },
    },
    async (request) => secrets.list(request.params.tenantId, request.query.limit ?? 50, request.query.cursor),
  );

  app.put(
    `${secretsPath}/:secretName`,
    {
      config: { auth: 'tenant', permission: 'secrets:write' },
      bodyLimit: Math.min(putBodyLimit, bodyLimitBytes),
      schema: {
        tags,
        summary: 'Write a secret (a new version)',
        description:
          'Creates version 1 (201) or the next version (200, rotation). The server seals the value to each reader with HPKE and keeps no plaintext and no way to open it: neither this nor any route returns the value. Adding or removing a reader therefore means writing the value again with the new list (the server cannot re-seal what it cannot read). The 10 newest versions are kept.',
        params: secretParams,
        body: putSecretBody,
        response: { 200: secretMetadata, 201: secretMetadata },
      },
    },
    async (request, reply) => {
      const { secret, created } = await secrets.put(request.params.tenantId, request.params.secretName, request.body);
      return reply.code(created ? 201 : 200).send(secret);
    },
  );

  app.get(
    `${secretsPath}/:secretName`,
    {
      config: { auth: 'tenant', permission: 'secrets:read' },
      schema: { tags, summary: 'Get a secret’s metadata', description: 'Versions, readers and dates; never the value.', params: secretParams, response: { 200: secretMetadata } },
    },
    async (request) => secrets.get(request.params.tenantId, request.params.secretName),
  );

  app.delete(
    `${secretsPath}/:secretName`,
    {
      config: { auth: 'tenant', permission: 'secrets:write' },
      schema: { tags, summary: 'Delete a secret', description: 'Every version and sealed copy goes.', params: secretParams, response: { 204: Type.Null({ description: 'Deleted.' }) } },
    },
    async (request, reply) => {
      await secrets.delete(request.params.tenantId, request.params.secretName);
      return reply.code(204).send(null);
    },
  );

  app.get(
    `${servicesPath}/:serviceId/secrets/:tenantId/:secretName`,
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'Read a sealed copy (the service itself)',
        description:
          "Authenticated by the service's own credential (`Authorization: Bearer bwsv_...`), which this route checks itself: 401 unauthenticated without one, 401 invalid_credentials for a bad or retired one. Any other caller, another service's path, and a secret this service does not read answer 404. The answer is the HPKE copy sealed to the service's public key; open it locally with the SDK (`openSealedSecret`). Every read is audited in the tenant's trail.",
        params: sealedCopyParams,
        querystring: sealedCopyQuery,
        response: { 200: sealedSecret },
      },
    },
    async (request) => {
      const { serviceId, tenantId, secretName } = request.params;
      return secrets.readSealed(request.headers.authorization, { serviceId, tenantId, name: secretName, version: request.query.version });
    },
  );
};
