// Small type guards for the JSON the gateway answers with. The CLI checks every
// answer before it reads a field, without loading a schema library: a command
// starts in a fraction of the time that loading TypeBox's validator takes.

/** True when `value` has type T; the type is inferred from how the guard is built. */
export type Guard<T> = (value: unknown) => value is T

/** A property that may be missing (or undefined). */
export interface OptionalGuard<T> extends Guard<T | undefined> {
  readonly optional: true
}

export type Infer<G> = G extends Guard<infer T> ? T : never

type Shape = Record<string, Guard<unknown>>
type Simplify<T> = { [K in keyof T]: T[K] } & {}
type RequiredKeys<S extends Shape> = { [K in keyof S]: S[K] extends { readonly optional: true } ? never : K }[keyof S]
type OptionalKeys<S extends Shape> = Exclude<keyof S, RequiredKeys<S>>
export type ObjectOf<S extends Shape> = Simplify<{ [K in RequiredKeys<S>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Exclude<Infer<S[K]>, undefined> }>

export const string: Guard<string> = (value): value is string => typeof value === 'string'
export const number: Guard<number> = (value): value is number => typeof value === 'number' && Number.isFinite(value)
export const boolean: Guard<boolean> = (value): value is boolean => typeof value === 'boolean'
export const nil: Guard<null> = (value): value is null => value === null

export function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

export function optional<T> (guard: Guard<T>): OptionalGuard<T> {
  const check = (value: unknown): value is T | undefined => value === undefined || guard(value)
  return Object.assign(check, { optional: true as const })
}

export function array<T> (guard: Guard<T>): Guard<T[]> {
  return (value): value is T[] => Array.isArray(value) && value.every((item) => guard(item))
}

export function union<A, B> (a: Guard<A>, b: Guard<B>): Guard<A | B> {
  return (value): value is A | B => a(value) || b(value)
}

/** An object whose values all pass `guard`. */
export function record<T> (guard: Guard<T>): Guard<Record<string, T>> {
  return (value): value is Record<string, T> => isRecord(value) && Object.values(value).every((item) => guard(item))
}

/** An object with at least these properties (others are allowed: newer gateways may add fields). */
export function object<S extends Shape> (shape: S): Guard<ObjectOf<S>> {
  const entries = Object.entries(shape)
  return (value): value is ObjectOf<S> => isRecord(value) && entries.every(([key, guard]) => guard(value[key]))
}

/** A list page as the REST API returns it. */
export function page<T> (item: Guard<T>): Guard<{ items: T[], nextCursor: string | null }> {
  return object({ items: array(item), nextCursor: union(string, nil) })
}

export const unknownRecord: Guard<Record<string, unknown>> = isRecord
