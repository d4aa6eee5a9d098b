/**
 * One CSV row (RFC 4180): a field with a comma, a quote or a line break is quoted, quotes doubled. A text
 * field that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is prefixed with an apostrophe, so a
 * spreadsheet shows it instead of running it as a formula (OWASP "CSV injection"); an audit export carries
 * attacker-chosen text (user agents, e-mail addresses tried at login).
 */
export function toCsvRow(cells: readonly (string | number | null)[]): string {
  return `${cells.map(csvCell).join(',')}\r\n`;
}

function csvCell(value: string | number | null): string {
  if (value === null) return '';
  if (typeof value === 'number') return String(value);
  const text = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
