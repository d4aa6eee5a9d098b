#!/usr/bin/env node
// Bulwark runs its TypeScript sources directly through Node's type stripping (Node >= 22.18).
// Inside the project, npm scripts put the node@24 devDependency first on PATH.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(
    `bulwark needs Node.js 22.18 or newer (24 LTS recommended); this is ${process.version}.\n` +
      'Run it through npm (npm start, npx bulwark) so the node@24 devDependency is used.\n',
  );
  process.exit(1);
}
await import('../src/cli/main.ts');
