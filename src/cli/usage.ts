import { parseArgs } from 'node:util';

/** A bad invocation: the message and the usage go to stderr, exit code 2, before storage is touched. */
export class UsageError extends Error {}

/**
 * Parses the arguments of a command that has a usage text: `--help` prints it (exit 0), a UsageError prints
 * it after the message (exit 2); otherwise `run` gets the parsed invocation.
 */
export async function withUsage<Invocation>(
  args: string[],
  usage: string,
  parse: (args: string[]) => Invocation | 'help',
  run: (invocation: Invocation) => Promise<number>,
): Promise<number> {
  let invocation: Invocation | 'help';
  try {
    invocation = parse(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`${error.message}\n\n${usage}\n`);
    return 2;
  }
  if (invocation === 'help') {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  return run(invocation);
}

/**
 * `<subcommand> [--json] [--tenant <value>] [--help]`, the shape `bulwark keys` and `bulwark audit` share.
 * parseArgs explains unknown options, missing values and stray arguments in its own words.
 */
export function parseSubcommand<Name extends string>(
  command: string,
  subcommands: readonly Name[],
  args: string[],
): { name: Name; json: boolean; tenant: string | undefined } | 'help' {
  const [name, ...rest] = args;
  if (name === '--help' || name === '-h' || name === 'help') return 'help';
  if (name === undefined) throw new UsageError(`Missing ${command} subcommand.`);
  if (!(subcommands as readonly string[]).includes(name)) throw new UsageError(`Unknown ${command} subcommand: ${name}`);
  let values: { json?: boolean; help?: boolean; tenant?: string };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, tenant: { type: 'string' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    if (error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')) throw new UsageError(`bulwark ${command} ${name}: ${error.message}`);
    throw error;
  }
  if (values.help === true) return 'help';
  return { name: name as Name, json: values.json === true, tenant: values.tenant };
}
