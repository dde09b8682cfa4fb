/**
 * The value of one series of a server's /metrics, named with its labels as
 * the exposition prints them (`scopegate_handshakes_total{outcome="ok"}`), or
 * 0 when the server has not printed it yet (a counter never incremented).
 */
export async function metricValue (httpUrl: string, series: string): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}
