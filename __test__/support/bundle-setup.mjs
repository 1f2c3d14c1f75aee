// vitest globalSetup: index.js is generated from lib/ and loader.js
// (scripts/bundle.js); regenerate it before any test file runs, so the suite
// always tests the sources as they are now, in the one file that ships.
import { createRequire } from 'node:module'

export default function setup() {
  createRequire(import.meta.url)('../../scripts/bundle.js').write()
}
