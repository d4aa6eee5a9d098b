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
