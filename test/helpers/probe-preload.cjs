// Preloaded (node --expose-gc --require) into server instances that the fuzz
// test and the soak run as child processes. On SIGWINCH (ignored by default;
// SIGUSR2 would start close-with-grace's shutdown) it collects garbage and
// writes one line to stderr: `@@probe {"heapUsed":…,"rss":…,"resources":{…}}`,
// what the process holds after a full GC, for leak checks from outside.
'use strict'

process.on('SIGWINCH', () => {
  if (typeof globalThis.gc === 'function') globalThis.gc()
  const memory = process.memoryUsage()
  const resources = {}
  for (const name of process.getActiveResourcesInfo()) resources[name] = (resources[name] ?? 0) + 1
  process.stderr.write(`@@probe ${JSON.stringify({ heapUsed: memory.heapUsed, rss: memory.rss, resources })}\n`)
})

// A test run that tap kills (its time limit) cannot stop its instances: an
// instance whose parent is gone stops itself instead of running on.
const parent = process.ppid
setInterval(() => {
  if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM')
}, 1000).unref()
