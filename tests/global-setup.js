// Runs once before the suite: writes the README's React example to
// react/readme-example.gen.tsx and builds the React fixture pages (react/) with Vite
// into target/fixtures/react, which `cargo xtask test` serves at /fixtures/react/.
// Needs the built package in node_modules/sqlite-tabs (`cargo xtask build` puts it there).
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

/** Heading of the README section whose tsx code block is the example. */
export const README_SECTION = '## Use it in a React app';

/** The first ```tsx block of README's React section. */
export function readmeExample(readme) {
  const start = readme.indexOf(`\n${README_SECTION}\n`);
  if (start < 0) throw new Error(`README.md has no "${README_SECTION}" section`);
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const match = /\n```tsx\n([\s\S]*?)\n```\n/.exec(section);
  if (!match) throw new Error(`README's "${README_SECTION}" has no \`\`\`tsx code block`);
  return `${match[1]}\n`;
}

export default async function globalSetup() {
  if (!fs.existsSync(here('node_modules/sqlite-tabs/react.js'))) {
    throw new Error(
      'tests/node_modules/sqlite-tabs is missing or has no react.js: run `cargo xtask build` ' +
        '(or the suite through `cargo xtask test --only e2e`)',
    );
  }
  const readme = fs.readFileSync(here('../README.md'), 'utf8');
  fs.writeFileSync(
    here('react/readme-example.gen.tsx'),
    `// Generated from README.md by tests/global-setup.js: do not edit.\n${readmeExample(readme)}`,
  );
  await build({ configFile: here('react/vite.config.js') });
}
