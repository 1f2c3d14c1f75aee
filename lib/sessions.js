'use strict'
// session_end tracking (CONTRACT §6). Placeholder until the shutdown issue
// lands: the API exists so the package loads, but nothing is emitted yet.

function notYet(name) {
  return () => {
    throw new Error(`${name} is not implemented yet (see README status)`)
  }
}

module.exports = {
  onSessionEnd: notYet('onSessionEnd'),
  trackActiveSession: notYet('trackActiveSession'),
  listActiveSessions: () => [],
  drainActiveSessions: async () => ({ emittedSessionIds: [], timedOut: false }),
  recoverOrphanedSessions: notYet('recoverOrphanedSessions'),
  drainForTest: async () => {},
  resetForTest: () => {},
}
