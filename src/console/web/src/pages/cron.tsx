import type { JSX } from 'preact'
import { useCallback, useEffect, useRef, useState } from 'preact/hooks'
import { enc, errorMessage, type Api } from '../api.ts'
import { describePayload, describeSchedule, duration } from '../format.ts'
import { useAdminEvents } from '../live.ts'
import type { CronJob, CronRun, Page } from '../types.ts'
import { Id, Time, useNow } from '../ui.tsx'

export function CronPage ({ api }: { api: Api }): JSX.Element {
  const [jobs, setJobs] = useState<CronJob[] | null>(null)
  const [error, setError] = useState<string | null>(null)
  // Bumped on every cron event, so open run lists reload too.
  const [revision, setRevision] = useState(0)
  const now = useNow(5000)

  const load = useCallback(async () => {
    try {
      const page = await api.get<Page<CronJob>>('/cron/jobs?limit=200')
      setJobs(page.items)
      setError(null)
    } catch (err) {
      setError(errorMessage(err))
    }
  }, [api])
  useEffect(() => { void load() }, [load])

  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined)
  useAdminEvents((event) => {
    if (event.event !== 'cron' && event.event !== 'ready') return
    clearTimeout(timer.current)
    timer.current = setTimeout(() => {
      void load()
      setRevision((r) => r + 1)
    }, 300)
  })
  useEffect(() => () => clearTimeout(timer.current), [])

  return (
    <section aria-labelledby="page-title">
      <div class="page-head">
        <h1 id="page-title" tabIndex={-1}>Cron jobs</h1>
        <button type="button" class="button-secondary button-small" onClick={() => { void load(); setRevision((r) => r + 1) }}>Refresh</button>
      </div>
      <p class="lede">Scheduled jobs, when each runs next, and how its last runs went.</p>
      {error !== null && <p class="error" role="alert">Could not load the jobs: {error}</p>}
      {jobs === null && error === null && <p class="muted">Loading…</p>}
      {jobs?.length === 0 && <p class="empty">No cron jobs.</p>}
      <div class="cards">
        {jobs?.map((job) => <JobCard key={job.id} api={api} job={job} now={now} revision={revision} />)}
      </div>
    </section>
  )
}

function statusBadge (status: string | undefined): JSX.Element | null {
  if (status === undefined) return null
  const kind = status === 'ok' ? 'badge-ok' : status === 'error' ? 'badge-danger' : status === 'running' ? 'badge-info' : 'badge'
  return <span class={`badge ${kind}`}>{status}</span>
}

function JobCard ({ api, job, now, revision }: { api: Api, job: CronJob, now: number, revision: number }): JSX.Element {
  const [open, setOpen] = useState(false)
  const [runs, setRuns] = useState<CronRun[] | null>(null)
  const [error, setError] = useState<string | null>(null)
  const titleId = `job-${job.id}`

  useEffect(() => {
    if (!open) return
    let live = true
    api.get<Page<CronRun>>(`/cron/jobs/${enc(job.id)}/runs?limit=10`).then(
      (page) => { if (live) { setRuns(page.items); setError(null) } },
      (err: unknown) => { if (live) setError(errorMessage(err)) }
    )
    return () => { live = false }
  }, [open, revision, api, job.id])

  return (
    <article class="card job" aria-labelledby={titleId} data-job-id={job.id}>
      <header class="card-head">
        <h2 id={titleId}>{job.name}</h2>
        <span class={`badge ${job.enabled ? 'badge-ok' : ''}`}>{job.enabled ? 'enabled' : 'disabled'}</span>
      </header>
      {job.description !== undefined && <p class="muted">{job.description}</p>}
      <dl class="facts">
        <div><dt>Schedule</dt><dd>{describeSchedule(job.schedule)}</dd></div>
        <div><dt>Payload</dt><dd class="wrap">{describePayload(job.payload)}</dd></div>
        <div><dt>Next run</dt><dd>{job.state.nextRunAtMs === undefined ? <span class="muted">none</span> : <Time ms={job.state.nextRunAtMs} now={now} />}</dd></div>
        <div><dt>Last run</dt><dd>{job.state.lastRunAtMs === undefined ? <span class="muted">never</span> : <><Time ms={job.state.lastRunAtMs} now={now} /> {statusBadge(job.state.lastStatus)}</>}</dd></div>
        <div><dt>Delivered to</dt><dd>{job.ownerDeviceId === undefined ? 'every operator.read connection' : <>device <Id id={job.ownerDeviceId} label="device" /></>}</dd></div>
        <div><dt>Job id</dt><dd><Id id={job.id} label="job" /></dd></div>
      </dl>
      {job.state.lastError !== undefined && <p class="error">Last error: {job.state.lastError}</p>}
      <details class="runs" onToggle={(e) => setOpen(e.currentTarget.open)}>
        <summary>Last runs</summary>
        {error !== null && <p class="error" role="alert">{error}</p>}
        {open && runs === null && error === null && <p class="muted">Loading…</p>}
        {runs?.length === 0 && <p class="muted">No runs yet.</p>}
        {runs !== null && runs.length > 0 && (
          <table class="table responsive">
            <thead><tr><th scope="col">Status</th><th scope="col">Due</th><th scope="col">Started</th><th scope="col">Took</th><th scope="col">Instance</th></tr></thead>
            <tbody>
              {runs.map((run) => (
                <tr key={run.runId}>
                  <td data-label="Status">{statusBadge(run.status)}{run.error !== undefined && <span class="error-inline">{run.error}</span>}</td>
                  <td data-label="Due"><Time ms={run.dueAtMs} now={now} /></td>
                  <td data-label="Started"><Time ms={run.startedAtMs} now={now} /></td>
                  <td data-label="Took">{run.finishedAtMs === undefined ? '…' : duration(run.finishedAtMs - run.startedAtMs)}</td>
                  <td data-label="Instance" class="mono wrap">{run.instance}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </details>
    </article>
  )
}
