'use strict'
// The native addon of this copy of the package, and the shaping of the
// errors it reports. Every other module of lib/ reaches the addon through
// this one; loader.js finds the addon file (a local build, then the platform
// package) and may hand a second copy of the package the first copy's addon
// (one registry per process, see docs/distribution.md).

const native = require('../loader').load()

/**
 * An OS error reported by the addon (`{ message, errno, code, syscall, path }`),
 * as a JS `Error` shaped like Node's own fs errors. Guarantees those five
 * fields and nothing else (no stack beyond this call).
 */
function osError(e) {
  const err = new Error(e.message)
  err.errno = e.errno
  err.code = e.code
  err.syscall = e.syscall
  err.path = e.path
  return err
}

module.exports = { native, osError }
