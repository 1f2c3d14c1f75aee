import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['__test__/**/*.test.{js,mjs,ts}'],
    // index.js is generated from lib/ (scripts/bundle.js): made fresh before the tests.
    globalSetup: ['./__test__/support/bundle-setup.mjs'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Cross-process tests spawn children; two cores.
    maxWorkers: 2,
    minWorkers: 1,
  },
})
