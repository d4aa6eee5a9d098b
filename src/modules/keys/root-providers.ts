import { join, resolve } from 'node:path';
import type { Clock } from '../../platform/clock.ts';
import type { Config } from '../../platform/config/config.ts';
import { EnvRootKey } from './root/env.ts';
import { openLocalFileRootKey } from './root/local-file.ts';
import type { RootKeyProvider } from './root/provider.ts';
import { VaultTransitRootKey } from './root/vault-transit.ts';

type RootKeyConfig = Pick<
  Config,
  | 'env'
  | 'dataDir'
  | 'rootKeyProvider'
  | 'allowLocalRootKey'
  | 'rootKey'
  | 'vaultAddr'
  | 'vaultToken'
  | 'vaultTransitMount'
  | 'vaultTransitKey'
  | 'vaultNamespace'
>;

/**
 * Opens the configured root key provider. The local key file is the zero-setup default; anyone who can
 * read the data folder can read every tenant with it, so production refuses it unless accepted explicitly.
 */
export async function openRootKeyProvider(config: RootKeyConfig, clock: Clock): Promise<{ provider: RootKeyProvider; warnings: string[] }> {
  switch (config.rootKeyProvider) {
    case 'env':
      return { provider: new EnvRootKey(config.rootKey ?? ''), warnings: [] };
    case 'vault-transit':
      // Config validation already requires the address and token for this provider.
      return {
        provider: new VaultTransitRootKey({
          address: config.vaultAddr ?? '',
          token: config.vaultToken ?? '',
          mountPath: config.vaultTransitMount,
          keyName: config.vaultTransitKey,
          ...(config.vaultNamespace === undefined ? {} : { namespace: config.vaultNamespace }),
        }),
        warnings: [],
      };
    case 'local-file':
    default: {
      const path = join(resolve(config.dataDir), 'root-key.json');
      const message = `root key in a local file (${path}): whoever reads the data folder reads every tenant; use a KMS (BULWARK_ROOT_KEY_PROVIDER=vault-transit) in production`;
      if (config.env === 'production' && !config.allowLocalRootKey) {
        throw new Error(`${message}. Refusing to start in production; set BULWARK_ALLOW_LOCAL_ROOT_KEY=true to accept it.`);
      }
      return { provider: await openLocalFileRootKey(path, clock), warnings: [message] };
    }
  }
}
