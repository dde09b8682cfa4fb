import Table from 'cli-table3'

/** Ids in tables: their first 8 characters (any unique prefix of 8 or more is accepted back). */
export function short (id: string | undefined): string {
  return id === undefined ? '-' : id.slice(0, 8)
}

/** A time as ISO 8601 in UTC, to the second. */
export function time (ms: number | undefined): string {
  if (ms === undefined) return '-'
  const date = new Date(ms)
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString().replace(/\.\d{3}Z$/, 'Z')
}

export function list (values: readonly string[] | undefined): string {
  return values === undefined || values.length === 0 ? '-' : values.join(', ')
}

/** A duration in ms as the largest fitting unit: 1500 -> 1.5s, 3600000 -> 1h. */
export function duration (ms: number): string {
  const units: Array<[string, number]> = [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]]
  for (const [unit, size] of units) {
    if (ms >= size) return `${Number((ms / size).toFixed(1))}${unit}`
  }
  return `${ms}ms`
}

const PLAIN = { head: [], border: [], compact: true }

/** A table with a header row, no colours (the same bytes on a terminal and in a pipe). */
export function table (head: string[], rows: string[][], colWidths?: Array<number | null>): string {
  const out = new Table({ head, style: PLAIN, ...(colWidths !== undefined && { colWidths, wordWrap: true }) })
  out.push(...rows)
  return out.toString()
}

/** Label / value pairs, one per line. */
export function details (rows: Array<[string, string]>): string {
  const out = new Table({ style: PLAIN })
  for (const [label, value] of rows) out.push({ [label]: value })
  return out.toString()
}

const NO_BORDER = {
  top: '', 'top-mid': '', 'top-left': '', 'top-right': '',
  bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
  left: '', 'left-mid': '', mid: '', 'mid-mid': '',
  right: '', 'right-mid': '', middle: '  '
}

/** Rows without borders; fixed widths keep rows printed at different times aligned. */
export function rows (lines: string[][], colWidths?: Array<number | null>): string {
  const out = new Table({ chars: NO_BORDER, style: { ...PLAIN, 'padding-left': 0, 'padding-right': 0 }, ...(colWidths !== undefined && { colWidths, wordWrap: true }) })
  out.push(...lines)
  return out.toString().split('\n').map((line) => line.trimEnd()).join('\n')
}

/** Where results go: one JSON document, or text for people. Messages always go to stderr. */
export class Output {
  readonly json: boolean

  constructor (json: boolean) {
    this.json = json
  }

  /** Prints `doc` as JSON with --json, else what `human` returns. */
  result (doc: unknown, human: () => string): void {
    if (this.json) {
      process.stdout.write(JSON.stringify(doc, null, 2) + '\n')
      return
    }
    const text = human()
    if (text !== '') process.stdout.write(text.endsWith('\n') ? text : text + '\n')
  }

  /** One JSON document per line (for output that never ends, such as `audit --follow`). */
  line (doc: unknown): void {
    process.stdout.write(JSON.stringify(doc) + '\n')
  }

  message (text: string): void {
    process.stderr.write(text + '\n')
  }
}
