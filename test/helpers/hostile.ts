// Strings that break naive code: SQL fragments, NUL, separators the signed
// string uses, unicode that changes direction or length, path tricks. Used by
// the fuzz test (as values fast-check picks from) and the security test (in
// every REST field and path parameter, and in connect params).
export const SQL_STRINGS: readonly string[] = [
  "'; DROP TABLE devices; --",
  '" OR 1=1 --',
  "' OR '1'='1",
  "1; DELETE FROM audit_log WHERE '1'='1",
  "'); TRUNCATE device_roles; --",
  "admin'--",
  '%27%20OR%201%3D1',
  '$1',
  '\\',
  "x' UNION SELECT token_hash FROM device_tokens --"
]

export const HOSTILE_STRINGS: readonly string[] = [
  ...SQL_STRINGS,
  '\u0000',
  'a\u0000b',
  '|',
  'v3|x|y',
  ',',
  '../../etc/passwd',
  '%00',
  '\u202Eevil',
  '\uFEFF',
  '\u2028',
  '😀',
  'é',
  '\uD800',
  '__proto__',
  'constructor',
  '{"$ne":null}',
  '${jndi:ldap://x}',
  '<script>alert(1)</script>'
]
