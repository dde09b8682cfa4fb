import { Ajv } from 'ajv'
import type { FastifyInstance, FastifySchemaValidationError } from 'fastify'

// Bodies are validated as sent: coercion would turn `"scopes":"operator.read"`
// into a list, and dropping unknown fields would turn a misspelt `{"scope":[…]}`
// into "approve everything". Query strings and path params are text, so they coerce.
const bodyAjv = new Ajv({ strict: false, coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false })
const textAjv = new Ajv({ strict: false, coerceTypes: 'array', removeAdditional: true, useDefaults: true, allErrors: false })

/** Fastify's message format (`body/scopes must be array`), naming an unknown field too (`body/scope is not allowed`). */
function formatValidationErrors (errors: FastifySchemaValidationError[], dataVar: string): Error {
  return new Error(errors.map((e) => {
    const extra = e.keyword === 'additionalProperties' ? (e.params as { additionalProperty?: unknown }).additionalProperty : undefined
    return typeof extra === 'string' ? `${dataVar}${e.instancePath}/${extra} is not allowed` : `${dataVar}${e.instancePath} ${e.message ?? 'is invalid'}`
  }).join(', '))
}

export function registerValidation (app: FastifyInstance): void {
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv : textAjv).compile(schema as object))
  app.setSchemaErrorFormatter(formatValidationErrors)
}
