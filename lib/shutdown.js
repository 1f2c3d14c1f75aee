'use strict'
// Process hooks (CONTRACT §6). Placeholder until the shutdown issue lands.

const cleanupSignals = ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGHUP', 'SIGABRT']

module.exports = {
  cleanupSignals,
  ensureHooksOnFirstUse() {},
  handleTerminationSignal() {},
}
