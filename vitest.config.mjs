import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['__test__/**/*.test.{js,mjs,ts}'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Cross-process tests spawn children; two cores.
    maxWorkers: 2,
    minWorkers: 1,
  },
})
