/**
 * Renders a Helm chart (deploy/helm/bulwark) in tests the way `helm template` does: values.yaml coalesced
 * with overrides and checked against values.schema.json, every template file executed as Go text/template
 * with Helm's functions, `<no value>` removed, the output split into YAML documents.
 *
 * Why hand-written: no helm binary is reachable from the build machines, and npm has no maintained
 * JavaScript implementation of Go templates with Helm's functions (looked up for #10:
 * `@ctrl/golang-template` and `go-text-template` do fields, if and range, without define/include, typed
 * calls or collections; `@evertdespiegeleer/go-template` runs Go's own engine as WebAssembly but offers no way
 * to register Helm's functions, so `include`, `toYaml` or `required` cannot exist there).
 *
 * So this is the subset the chart uses, kept faithful to Go where a chart could tell the difference:
 * values' numbers are float64 and template literals int (bigint here), so `eq 1 .Values.n` fails and
 * `nindent .Values.n` is refused as in Go; a field of a missing map key is an error
 * (`nil pointer evaluating interface {}.x`); `and`/`or` short-circuit and return an operand; maps range in
 * key order; variables are checked at parse time; `{{-`/`-}}` trim as in Go. Any other function, keyword or
 * syntax throws, so the chart cannot lean on something this renderer would fake. `toYaml` and `toJson`
 * produce the same data as Helm's (keys sorted), not byte-identical text.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { parse as parseYaml, parseAllDocuments, stringify as stringifyYaml } from 'yaml';

/** A Go struct in the render context (`.Chart`, `.Capabilities`): unlike a map, an unknown field is an error. */
export class GoStruct {
  readonly typeName: string;
  readonly fields: ReadonlyMap<string, unknown>;
  constructor(typeName: string, fields: Record<string, unknown>) {
    this.typeName = typeName;
    this.fields = new Map(Object.entries(fields));
  }
}

type GoMap = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------------------
// Lexing: text and actions, with Go's trim markers and comments.

type Token =
  | { kind: 'field'; name: string; adjacent: boolean; offset: number }
  | { kind: 'variable'; name: string; adjacent: boolean; offset: number }
  | { kind: 'identifier'; name: string; adjacent: boolean; offset: number }
  | { kind: 'string'; value: string; adjacent: boolean; offset: number }
  | { kind: 'number'; text: string; adjacent: boolean; offset: number }
  | { kind: 'dot' | 'pipe' | 'lparen' | 'rparen' | 'declare' | 'assign' | 'comma'; adjacent: boolean; offset: number };

type Segment = { kind: 'text'; text: string } | { kind: 'action'; tokens: Token[]; offset: number };

const isSpace = (c: string | undefined) => c === ' ' || c === '\t' || c === '\r' || c === '\n';
const isAlnum = (c: string | undefined) => c !== undefined && /[\p{L}\p{Nd}_]/u.test(c);
// What may follow a word in an action (Go's atTerminator).
const isTerminator = (source: string, i: number) => {
  const c = source[i];
  return c === undefined || isSpace(c) || '.,|:)('.includes(c) || source.startsWith('}}', i);
};

class TemplateError extends Error {}

function lineOf(source: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < source.length; i += 1) if (source[i] === '\n') line += 1;
  return line;
}

function lex(name: string, source: string): Segment[] {
  const fail = (offset: number, message: string): never => {
    throw new TemplateError(`template: ${name}:${lineOf(source, offset)}: ${message}`);
  };
  const segments: Segment[] = [];
  let pos = 0;
  let trimNext = false;
  while (pos < source.length) {
    const open = source.indexOf('{{', pos);
    let text = source.slice(pos, open === -1 ? source.length : open);
    if (trimNext) text = text.replace(/^[ \t\r\n]+/, '');
    if (open === -1) {
      if (text !== '') segments.push({ kind: 'text', text });
      break;
    }
    let start = open + 2;
    if (source[start] === '-' && isSpace(source[start + 1])) {
      text = text.replace(/[ \t\r\n]+$/, '');
      start += 2;
    }
    if (text !== '') segments.push({ kind: 'text', text });
    if (source.startsWith('/*', start)) {
      const close = source.indexOf('*/', start + 2);
      if (close === -1) fail(open, 'unclosed comment');
      const after = close + 2;
      if (source.startsWith('}}', after)) {
        trimNext = false;
        pos = after + 2;
      } else if (isSpace(source[after]) && source[after + 1] === '-' && source.startsWith('}}', after + 2)) {
        trimNext = true;
        pos = after + 4;
      } else {
        fail(open, 'comment ends before closing delimiter');
      }
      continue;
    }
    const action = lexAction(source, start, fail);
    segments.push({ kind: 'action', tokens: action.tokens, offset: open });
    trimNext = action.trimRight;
    pos = action.end;
  }
  return segments;
}

function lexAction(source: string, start: number, fail: (offset: number, message: string) => never): { tokens: Token[]; end: number; trimRight: boolean } {
  const tokens: Token[] = [];
  let i = start;
  let depth = 0;
  let adjacent = false;
  const word = (from: number) => {
    let end = from;
    while (isAlnum(source[end])) end += 1;
    if (!isTerminator(source, end)) fail(end, `bad character ${JSON.stringify(source[end])}`);
    return end;
  };
  for (;;) {
    const c = source[i];
    if (c === undefined) fail(start, 'unclosed action');
    if (source.startsWith('}}', i)) {
      if (depth > 0) fail(i, 'unclosed left paren');
      return { tokens, end: i + 2, trimRight: false };
    }
    if (isSpace(c)) {
      if (source[i + 1] === '-' && source.startsWith('}}', i + 2)) {
        if (depth > 0) fail(i, 'unclosed left paren');
        return { tokens, end: i + 4, trimRight: true };
      }
      i += 1;
      adjacent = false;
      continue;
    }
    const offset = i;
    const push = (token: Token) => {
      tokens.push(token);
      adjacent = true;
    };
    if (c === '"') {
      let j = i + 1;
      while (source[j] !== '"') {
        if (source[j] === undefined || source[j] === '\n') fail(i, 'unterminated quoted string');
        j += source[j] === '\\' ? 2 : 1;
      }
      push({ kind: 'string', value: unquoteGo(source.slice(i + 1, j), (message) => fail(i, message)), adjacent, offset });
      i = j + 1;
    } else if (c === '`') {
      const j = source.indexOf('`', i + 1);
      if (j === -1) fail(i, 'unterminated raw quoted string');
      push({ kind: 'string', value: source.slice(i + 1, j), adjacent, offset });
      i = j + 1;
    } else if (c === "'") {
      fail(i, 'character constants are not supported by this renderer');
    } else if (c === '$') {
      const end = word(i + 1);
      push({ kind: 'variable', name: source.slice(i, end), adjacent, offset });
      i = end;
    } else if (c === '.' && !/[0-9]/.test(source[i + 1] ?? '')) {
      if (isAlnum(source[i + 1])) {
        const end = word(i + 1);
        push({ kind: 'field', name: source.slice(i + 1, end), adjacent, offset });
        i = end;
      } else {
        push({ kind: 'dot', adjacent, offset });
        i += 1;
      }
    } else if (/[0-9.+-]/.test(c)) {
      const match = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?/.exec(source.slice(i));
      if (!match) fail(i, `bad number syntax at ${JSON.stringify(source.slice(i, i + 8))}`);
      const end = i + match[0].length;
      if (!isTerminator(source, end)) fail(i, `bad number syntax (hex, octal, imaginary and _ are not supported): ${JSON.stringify(source.slice(i, end + 1))}`);
      push({ kind: 'number', text: match[0], adjacent, offset });
      i = end;
    } else if (isAlnum(c)) {
      const end = word(i);
      push({ kind: 'identifier', name: source.slice(i, end), adjacent, offset });
      i = end;
    } else if (c === ':' && source[i + 1] === '=') {
      push({ kind: 'declare', adjacent, offset });
      i += 2;
    } else if (c === '=' || c === '|' || c === ',' || c === '(' || c === ')') {
      if (c === '(') depth += 1;
      if (c === ')' && --depth < 0) fail(i, 'unexpected right paren');
      const kinds = { '=': 'assign', '|': 'pipe', ',': 'comma', '(': 'lparen', ')': 'rparen' } as const;
      push({ kind: kinds[c], adjacent, offset });
      i += 1;
    } else {
      fail(i, `unrecognized character in action: ${JSON.stringify(c)}`);
    }
  }
}

/** Go's double-quoted string escapes (strconv.Unquote). */
function unquoteGo(body: string, fail: (message: string) => never): string {
  return body.replace(/\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)/g, (_, escape: string) => {
    const named: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\', '"': '"' };
    const known = named[escape];
    if (known !== undefined) return known;
    if (/^[xuU]/.test(escape)) return String.fromCodePoint(parseInt(escape.slice(1), 16));
    if (/^[0-7]{3}$/.test(escape)) return String.fromCodePoint(parseInt(escape, 8));
    return fail(`invalid escape \\${escape} in quoted string`);
  });
}

// ---------------------------------------------------------------------------------------------------------
// Parsing: Go's parse tree for the supported subset.

interface Pipe {
  decl: string[];
  isAssign: boolean;
  cmds: Cmd[];
}
type Cmd = Arg[];
type Arg =
  | { kind: 'field'; names: string[] }
  | { kind: 'dot' }
  | { kind: 'variable'; name: string; names: string[] }
  | { kind: 'chain'; pipe: Pipe; names: string[] }
  | { kind: 'pipe'; pipe: Pipe }
  | { kind: 'function'; name: string }
  | { kind: 'string'; value: string }
  | { kind: 'int'; value: bigint }
  | { kind: 'float'; value: number }
  | { kind: 'bool'; value: boolean }
  | { kind: 'nil' };
interface Control {
  kind: 'if' | 'with' | 'range';
  pipe: Pipe;
  list: Node[];
  elseList: Node[] | undefined;
  line: number;
}
type Node =
  | { kind: 'text'; text: string }
  | { kind: 'action'; pipe: Pipe; line: number }
  | Control
  | { kind: 'template'; name: string; pipe: Pipe | undefined; line: number };

const keywords = new Set(['if', 'else', 'end', 'range', 'with', 'define', 'template', 'block', 'break', 'continue']);

class Parser {
  readonly #name: string;
  readonly #source: string;
  readonly #segments: Segment[];
  readonly #functions: ReadonlySet<string>;
  #index = 0;
  #vars: string[] = ['$'];
  readonly defines = new Map<string, Node[]>();

  constructor(name: string, source: string, functions: ReadonlySet<string>) {
    this.#name = name;
    this.#source = source;
    this.#segments = lex(name, source);
    this.#functions = functions;
  }

  parse(): Node[] {
    const { nodes, stop } = this.#list(true);
    if (stop !== undefined) this.#fail(stop.offset, `unexpected {{${stop.tokens[0]?.kind === 'identifier' ? stop.tokens[0].name : ''}}}`);
    return nodes;
  }

  #fail(offset: number, message: string): never {
    throw new TemplateError(`template: ${this.#name}:${lineOf(this.#source, offset)}: ${message}`);
  }

  /** Nodes up to an {{end}} or {{else ...}} (returned as `stop`), or to the end of the file at the top. */
  #list(top: boolean): { nodes: Node[]; stop: { tokens: Token[]; offset: number } | undefined } {
    const nodes: Node[] = [];
    while (this.#index < this.#segments.length) {
      const segment = this.#segments[this.#index++] as Segment;
      if (segment.kind === 'text') {
        nodes.push({ kind: 'text', text: segment.text });
        continue;
      }
      const { tokens, offset } = segment;
      const first = tokens[0];
      const line = lineOf(this.#source, offset);
      if (first === undefined) this.#fail(offset, 'missing command');
      const keyword = first.kind === 'identifier' && keywords.has(first.name) ? first.name : undefined;
      if (keyword === 'end' || keyword === 'else') {
        if (top) this.#fail(offset, `unexpected {{${keyword}}}`);
        return { nodes, stop: { tokens, offset } };
      }
      if (keyword === 'if' || keyword === 'with' || keyword === 'range') {
        nodes.push(this.#control(keyword, tokens.slice(1), offset, line));
      } else if (keyword === 'define') {
        if (!top) this.#fail(offset, 'unexpected {{define}}: define is allowed at the top level only');
        const [nameToken, ...rest] = tokens.slice(1);
        if (nameToken?.kind !== 'string' || rest.length > 0) this.#fail(offset, 'define takes one quoted name');
        if (this.defines.has(nameToken.value)) this.#fail(offset, `template: multiple definition of template ${JSON.stringify(nameToken.value)}`);
        const outer = this.#vars;
        this.#vars = ['$'];
        const body = this.#list(false);
        this.#vars = outer;
        this.#expectEnd(body.stop, offset, 'define');
        this.defines.set(nameToken.value, body.nodes);
      } else if (keyword === 'template') {
        const [nameToken, ...rest] = tokens.slice(1);
        if (nameToken?.kind !== 'string') this.#fail(offset, 'template takes a quoted name');
        nodes.push({ kind: 'template', name: nameToken.value, pipe: rest.length === 0 ? undefined : this.#pipeline(rest, offset, 'template'), line });
      } else if (keyword !== undefined) {
        this.#fail(offset, `{{${keyword}}} is not supported by this renderer`);
      } else {
        nodes.push({ kind: 'action', pipe: this.#pipeline(tokens, offset, 'action'), line });
      }
    }
    if (!top) this.#fail(this.#source.length, 'unexpected EOF');
    return { nodes, stop: undefined };
  }

  #expectEnd(stop: { tokens: Token[]; offset: number } | undefined, offset: number, what: string): void {
    const [first, ...rest] = stop?.tokens ?? [];
    if (stop === undefined || first?.kind !== 'identifier' || first.name !== 'end') this.#fail(stop?.offset ?? offset, `expected {{end}} for ${what}`);
    if (rest.length > 0) this.#fail(stop.offset, 'unexpected tokens after end');
  }

  /** if / with / range: the pipeline, the list, an optional {{else}} (or {{else if}}, {{else with}}). */
  #control(kind: 'if' | 'with' | 'range', tokens: Token[], offset: number, line: number): Node {
    const mark = this.#vars.length;
    const pipe = this.#pipeline(tokens, offset, kind);
    const body = this.#list(false);
    let elseList: Node[] | undefined;
    const stop = body.stop;
    const [first, second, ...rest] = stop?.tokens ?? [];
    if (stop !== undefined && first?.kind === 'identifier' && first.name === 'else') {
      if (second === undefined) {
        const tail = this.#list(false);
        this.#expectEnd(tail.stop, stop.offset, kind);
        elseList = tail.nodes;
      } else if (second.kind === 'identifier' && second.name === kind && kind !== 'range') {
        // {{else if x}} is {{else}}{{if x}}...{{end}}{{end}} sharing one {{end}}: the nested control consumes it.
        elseList = [this.#control(kind, rest, stop.offset, lineOf(this.#source, stop.offset))];
      } else {
        this.#fail(stop.offset, `unexpected tokens after {{else}} in ${kind}`);
      }
    } else {
      this.#expectEnd(stop, offset, kind);
    }
    this.#vars.length = mark;
    return { kind, pipe, list: body.nodes, elseList, line };
  }

  #pipeline(tokens: Token[], offset: number, context: 'action' | 'if' | 'with' | 'range' | 'template' | 'paren'): Pipe {
    const cursor = { tokens, at: 0 };
    const pipe = this.#pipe(cursor, offset, context);
    if (cursor.at < tokens.length) this.#fail(offset, `unexpected ${describe(tokens[cursor.at])} in ${context}`);
    return pipe;
  }

  #pipe(cursor: { tokens: Token[]; at: number }, offset: number, context: string): Pipe {
    const { tokens } = cursor;
    const decl: string[] = [];
    let isAssign = false;
    const at = (n: number) => tokens[cursor.at + n];
    if (at(0)?.kind === 'variable' && (at(1)?.kind === 'declare' || at(1)?.kind === 'assign')) {
      decl.push((at(0) as { name: string }).name);
      isAssign = at(1)?.kind === 'assign';
      cursor.at += 2;
    } else if (context === 'range' && at(0)?.kind === 'variable' && at(1)?.kind === 'comma' && at(2)?.kind === 'variable' && at(3)?.kind === 'declare') {
      decl.push((at(0) as { name: string }).name, (at(2) as { name: string }).name);
      cursor.at += 4;
    }
    for (const name of decl) {
      if (isAssign && !this.#vars.includes(name)) this.#fail(offset, `undefined variable ${JSON.stringify(name)}`);
    }
    const cmds: Cmd[] = [];
    for (;;) {
      const cmd: Cmd = [];
      while (cursor.at < tokens.length && at(0)?.kind !== 'pipe' && at(0)?.kind !== 'rparen') {
        const token = at(0) as Token;
        if (cmd.length > 0 && token.adjacent) this.#fail(offset, `unexpected ${describe(token)} in operand (missing space?)`);
        cmd.push(this.#operand(cursor, offset));
      }
      if (cmd.length === 0) this.#fail(offset, cmds.length === 0 ? 'missing command' : 'missing command after |');
      cmds.push(cmd);
      if (at(0)?.kind !== 'pipe') break;
      cursor.at += 1;
    }
    cmds.slice(1).forEach((cmd, i) => {
      if (['bool', 'dot', 'nil', 'int', 'float', 'string'].includes((cmd[0] as Arg).kind)) this.#fail(offset, `non executable command in pipeline stage ${i + 2}`);
    });
    if (!isAssign) this.#vars.push(...decl);
    return { decl, isAssign, cmds };
  }

  #operand(cursor: { tokens: Token[]; at: number }, offset: number): Arg {
    const term = this.#term(cursor, offset);
    const names: string[] = [];
    for (let next = cursor.tokens[cursor.at]; next?.kind === 'field' && next.adjacent; next = cursor.tokens[cursor.at]) {
      names.push(next.name);
      cursor.at += 1;
    }
    if (names.length === 0) return term;
    if (term.kind === 'field' || term.kind === 'variable') return { ...term, names: [...term.names, ...names] };
    if (term.kind === 'pipe') return { kind: 'chain', pipe: term.pipe, names };
    return this.#fail(offset, `fields of a ${term.kind} are not supported by this renderer`);
  }

  #term(cursor: { tokens: Token[]; at: number }, offset: number): Arg {
    const token = cursor.tokens[cursor.at++] as Token;
    switch (token.kind) {
      case 'dot':
        return { kind: 'dot' };
      case 'field':
        return { kind: 'field', names: [token.name] };
      case 'variable':
        if (!this.#vars.includes(token.name)) this.#fail(offset, `undefined variable ${JSON.stringify(token.name)}`);
        return { kind: 'variable', name: token.name, names: [] };
      case 'string':
        return { kind: 'string', value: token.value };
      case 'number':
        return /^[+-]?[0-9]+$/.test(token.text) ? { kind: 'int', value: BigInt(token.text) } : { kind: 'float', value: Number(token.text) };
      case 'lparen': {
        const pipe = this.#pipe(cursor, offset, 'paren');
        if (cursor.tokens[cursor.at++]?.kind !== 'rparen') this.#fail(offset, 'unclosed left paren');
        return { kind: 'pipe', pipe };
      }
      case 'identifier':
        if (token.name === 'true' || token.name === 'false') return { kind: 'bool', value: token.name === 'true' };
        if (token.name === 'nil') return { kind: 'nil' };
        if (keywords.has(token.name)) this.#fail(offset, `unexpected {{${token.name}}} in operand`);
        if (!this.#functions.has(token.name)) this.#fail(offset, `function ${JSON.stringify(token.name)} not defined`);
        return { kind: 'function', name: token.name };
      default:
        return this.#fail(offset, `unexpected ${describe(token)} in operand`);
    }
  }
}

function describe(token: Token | undefined): string {
  if (token === undefined) return 'end of action';
  return 'name' in token ? `${token.kind} ${token.name}` : token.kind;
}

// ---------------------------------------------------------------------------------------------------------
// Values: Go's view of YAML data. undefined is an invalid reflect.Value ("no value"), null an interface{} nil.

const isMap = (value: unknown): value is GoMap =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof GoStruct);

function goType(value: unknown): string {
  if (value === undefined) return 'invalid value';
  if (value === null) return 'interface {}';
  if (typeof value === 'string') return 'string';
  if (typeof value === 'bigint') return 'int';
  if (typeof value === 'number') return 'float64';
  if (typeof value === 'boolean') return 'bool';
  if (Array.isArray(value)) return '[]interface {}';
  if (value instanceof GoStruct) return value.typeName;
  return 'map[string]interface {}';
}

/** text/template's truth, which is also the negation of sprig's `empty` for every value the chart sees. */
function truth(value: unknown): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value === 'string') return value !== '';
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number') return value !== 0;
  if (typeof value === 'bigint') return value !== 0n;
  if (Array.isArray(value)) return value.length > 0;
  if (value instanceof GoStruct) return true;
  return Object.keys(value).length > 0;
}

/** fmt's %v of a float64: the shortest digits, in exponent form from 1e+06 on (so a values.yaml 1000000 prints `1e+06`). */
function formatFloat(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf';
  if (value === 0) return Object.is(value, -0) ? '-0' : '0';
  const [mantissa = '', exponentText = ''] = Math.abs(value).toExponential().split('e');
  const exponent = Number(exponentText);
  const sign = value < 0 ? '-' : '';
  if (exponent < -4 || exponent >= 6) return `${sign}${mantissa}e${exponent < 0 ? '-' : '+'}${String(Math.abs(exponent)).padStart(2, '0')}`;
  return `${sign}${String(Math.abs(value))}`;
}

/** fmt's %v. */
function formatValue(value: unknown): string {
  if (value === undefined || value === null) return '<nil>';
  if (typeof value === 'string') return value;
  if (typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (typeof value === 'number') return formatFloat(value);
  if (Array.isArray(value)) return `[${value.map(formatValue).join(' ')}]`;
  if (value instanceof GoStruct) throw new TemplateError(`printing a ${value.typeName} is not supported by this renderer`);
  const map = value as GoMap;
  return `map[${Object.keys(map)
    .sort()
    .map((key) => `${key}:${formatValue(map[key])}`)
    .join(' ')}]`;
}

/** strconv.Quote: Go's escapes for what is not printable. */
function quoteGo(text: string): string {
  let out = '"';
  for (const char of text) {
    const code = char.codePointAt(0) ?? 0;
    const named: Record<string, string> = { '\x07': '\\a', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v', '\\': '\\\\', '"': '\\"' };
    const escape = named[char];
    if (escape !== undefined) out += escape;
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else if (code < 0x80 || /[\p{L}\p{M}\p{N}\p{P}\p{S}]/u.test(char)) out += char;
    else if (code < 0x10000) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else out += `\\U${code.toString(16).padStart(8, '0')}`;
  }
  return `${out}"`;
}

/** fmt.Sprintf for the verbs charts use; Go's %!verb(type=value) for a mismatched argument. */
function sprintf(format: string, args: unknown[]): string {
  let next = 0;
  const out = format.replace(/%(.)/gs, (_, verb: string) => {
    if (verb === '%') return '%';
    if (!'sdvq'.includes(verb)) throw new TemplateError(`printf verb %${verb} is not supported by this renderer`);
    if (next >= args.length) return `%!${verb}(MISSING)`;
    const arg = args[next++];
    if (arg === null || arg === undefined) return verb === 'v' ? '<nil>' : `%!${verb}(<nil>)`;
    if (typeof arg === 'object') throw new TemplateError(`printf of a ${goType(arg)} is not supported by this renderer`);
    const bad = () => `%!${verb}(${goType(arg)}=${formatValue(arg)})`;
    if (verb === 'v') return formatValue(arg);
    if (verb === 'd') return typeof arg === 'bigint' ? String(arg) : bad();
    if (verb === 's') return typeof arg === 'string' ? arg : bad();
    return typeof arg === 'string' ? quoteGo(arg) : bad();
  });
  if (/%$/.test(format.replace(/%%/g, ''))) throw new TemplateError('printf format ends with a lone %');
  const extra = args.slice(next);
  return extra.length === 0 ? out : `${out}%!(EXTRA ${extra.map((arg) => `${goType(arg)}=${formatValue(arg)}`).join(', ')})`;
}

/** What Helm's toYaml/toJson marshal: JSON data (ints as numbers); a Go struct cannot appear in chart data. */
function toJsonData(value: unknown): unknown {
  if (value === undefined || value === null) return null;
  if (typeof value === 'bigint') return Number(value);
  if (Array.isArray(value)) return value.map(toJsonData);
  if (value instanceof GoStruct) throw new TemplateError(`marshalling a ${value.typeName} is not supported by this renderer`);
  if (isMap(value)) return Object.fromEntries(Object.keys(value).sort().map((key) => [key, toJsonData(value[key])]));
  return value;
}

/** Go's eq for one pair: basic kinds compare by value, different kinds are an error unless one side is nil. */
function equal(a: unknown, b: unknown): boolean {
  const nilA = a === undefined || a === null;
  const nilB = b === undefined || b === null;
  if (nilA && nilB) throw new TemplateError('comparing nil with nil is not supported by this renderer');
  if (nilA || nilB) return false;
  if (typeof a !== typeof b) throw new TemplateError(`incompatible types for comparison: ${goType(a)} and ${goType(b)}`);
  if (typeof a === 'object') throw new TemplateError(`non-comparable type ${goType(a)}`);
  return a === b;
}

/** Go's lt: numbers and strings of one kind only. */
function less(a: unknown, b: unknown): boolean {
  const ordered = (value: unknown) => typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint';
  if (!ordered(a) || !ordered(b)) throw new TemplateError(`invalid type for comparison: ${goType(a)} and ${goType(b)}`);
  if (typeof a !== typeof b) throw new TemplateError(`incompatible types for comparison: ${goType(a)} and ${goType(b)}`);
  return a < b;
}

// ---------------------------------------------------------------------------------------------------------
// Functions: Go's builtins and the Helm/sprig functions the chart uses, with Go's parameter types.

type ParamType = 'any' | 'string' | 'int' | 'map';
interface GoFunction {
  params: ParamType[];
  variadic?: ParamType;
  call: (args: unknown[], exec: Exec) => unknown;
}

const str = (value: unknown) => value as string;
const int = (value: unknown) => Number(value);

const functions: Record<string, GoFunction> = {
  // text/template builtins. and/or short-circuit, so Exec evaluates them itself: these give their arity only.
  and: { params: ['any'], variadic: 'any', call: () => undefined },
  or: { params: ['any'], variadic: 'any', call: () => undefined },
  not: { params: ['any'], call: ([value]) => !truth(value) },
  eq: {
    params: ['any'],
    variadic: 'any',
    call: ([first, ...rest]) => {
      if (rest.length === 0) throw new TemplateError('missing argument for comparison');
      return rest.some((other) => equal(first, other));
    },
  },
  ne: { params: ['any', 'any'], call: ([a, b]) => !equal(a, b) },
  ge: { params: ['any', 'any'], call: ([a, b]) => !less(a, b) },
  len: {
    params: ['any'],
    call: ([value]) => {
      if (typeof value === 'string') return BigInt(Buffer.byteLength(value));
      if (Array.isArray(value)) return BigInt(value.length);
      if (isMap(value)) return BigInt(Object.keys(value).length);
      throw new TemplateError(`len of ${goType(value)}`);
    },
  },
  index: {
    params: ['any'],
    variadic: 'any',
    call: ([item, ...keys]) => {
      let current = item;
      for (const key of keys) {
        if (isMap(current) && typeof key === 'string') current = Object.hasOwn(current, key) ? current[key] : null;
        else if (Array.isArray(current) && typeof key === 'bigint') {
          if (key < 0n || key >= BigInt(current.length)) throw new TemplateError(`index out of range: ${key}`);
          current = current[Number(key)];
        } else throw new TemplateError(`can't index item of type ${goType(current)} with ${goType(key)}`);
      }
      return current;
    },
  },
  print: {
    params: [],
    variadic: 'any',
    // fmt.Sprint: a space between operands when neither is a string.
    call: (args) => args.map((arg, i) => (i > 0 && typeof arg !== 'string' && typeof args[i - 1] !== 'string' ? ' ' : '') + formatValue(arg)).join(''),
  },
  printf: { params: ['string'], variadic: 'any', call: ([format, ...args]) => sprintf(str(format), args) },
  // Helm.
  include: { params: ['string', 'any'], call: ([name, data], exec) => exec.execute(str(name), data) },
  required: {
    params: ['string', 'any'],
    call: ([message, value]) => {
      if (value === null || value === '') throw new TemplateError(str(message));
      return value;
    },
  },
  fail: {
    params: ['string'],
    call: ([message]) => {
      throw new TemplateError(str(message));
    },
  },
  toYaml: { params: ['any'], call: ([value]) => stringifyYaml(toJsonData(value), { version: '1.1', sortMapEntries: true, indentSeq: false, lineWidth: 0 }).replace(/\n$/, '') },
  // encoding/json escapes <, > and & for HTML, and the two JavaScript line terminators.
  toJson: { params: ['any'], call: ([value]) => JSON.stringify(toJsonData(value)).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`) },
  // sprig.
  default: { params: ['any'], variadic: 'any', call: ([fallback, given]) => (truth(given) ? given : fallback) },
  empty: { params: ['any'], call: ([value]) => !truth(value) },
  quote: {
    params: [],
    variadic: 'any',
    call: (args) =>
      args
        .filter((arg) => arg !== null)
        .map((arg) => quoteGo(formatValue(arg)))
        .join(' '),
  },
  indent: { params: ['int', 'string'], call: ([n, text]) => ' '.repeat(int(n)) + str(text).replaceAll('\n', `\n${' '.repeat(int(n))}`) },
  nindent: { params: ['int', 'string'], call: ([n, text]) => `\n${' '.repeat(int(n))}${str(text).replaceAll('\n', `\n${' '.repeat(int(n))}`)}` },
  trunc: {
    params: ['int', 'string'],
    call: ([n, text]) => {
      const count = int(n);
      const value = str(text);
      if (count < 0 && value.length + count > 0) return value.slice(value.length + count);
      return count >= 0 && value.length > count ? value.slice(0, count) : value;
    },
  },
  trimSuffix: { params: ['string', 'string'], call: ([suffix, text]) => (str(text).endsWith(str(suffix)) ? str(text).slice(0, str(text).length - str(suffix).length) : str(text)) },
  contains: { params: ['string', 'string'], call: ([needle, text]) => str(text).includes(str(needle)) },
  b64enc: { params: ['string'], call: ([text]) => Buffer.from(str(text), 'utf8').toString('base64') },
  sha256sum: { params: ['string'], call: ([text]) => createHash('sha256').update(str(text), 'utf8').digest('hex') },
  list: { params: [], variadic: 'any', call: (args) => args },
  dict: {
    params: [],
    variadic: 'any',
    call: (args) => {
      const map: GoMap = {};
      for (let i = 0; i < args.length; i += 2) map[formatValue(args[i])] = i + 1 < args.length ? args[i + 1] : '';
      return map;
    },
  },
  hasKey: { params: ['map', 'string'], call: ([map, key]) => isMap(map) && Object.hasOwn(map, str(key)) },
};

const functionNames: ReadonlySet<string> = new Set(Object.keys(functions));

// ---------------------------------------------------------------------------------------------------------
// Execution.

const noFinal = Symbol('no final value');
const maxIncludeDepth = 1000;

/** A named template: a file's body or a define, with the file it came from (for error messages). */
interface NamedTemplate {
  file: string;
  nodes: Node[];
}

class Exec {
  readonly #templates: ReadonlyMap<string, NamedTemplate>;
  #vars: { name: string; value: unknown }[] = [];
  #depth = 0;
  #where = '';

  constructor(templates: ReadonlyMap<string, NamedTemplate>) {
    this.#templates = templates;
  }

  execute(name: string, dot: unknown): string {
    const template = this.#templates.get(name);
    if (template === undefined) throw new TemplateError(`template: no template ${JSON.stringify(name)} associated with template "gotpl"`);
    if (++this.#depth > maxIncludeDepth) throw new TemplateError(`rendering template has a nested reference name: ${name}`);
    const outer = { vars: this.#vars, where: this.#where };
    this.#vars = [{ name: '$', value: dot }];
    this.#where = template.file === name ? name : `${template.file} (in ${JSON.stringify(name)})`;
    try {
      const out: string[] = [];
      this.#walk(dot, template.nodes, out);
      return out.join('');
    } finally {
      this.#vars = outer.vars;
      this.#where = outer.where;
      this.#depth -= 1;
    }
  }

  #fail(line: number, error: unknown): never {
    if (error instanceof TemplateError && error.message.startsWith('template: ')) throw error;
    throw new TemplateError(`template: ${this.#where}:${line}: ${error instanceof Error ? error.message : String(error)}`);
  }

  #walk(dot: unknown, nodes: Node[], out: string[]): void {
    for (const node of nodes) {
      if (node.kind === 'text') {
        out.push(node.text);
        continue;
      }
      try {
        this.#node(dot, node, out);
      } catch (error) {
        this.#fail(node.line, error);
      }
    }
  }

  #node(dot: unknown, node: Exclude<Node, { kind: 'text' }>, out: string[]): void {
    const mark = this.#vars.length;
    try {
      switch (node.kind) {
        case 'action': {
          const value = this.#pipe(dot, node.pipe);
          if (node.pipe.decl.length === 0) out.push(value === undefined ? '<no value>' : formatValue(value));
          return;
        }
        case 'if':
        case 'with': {
          const value = this.#pipe(dot, node.pipe);
          if (truth(value)) this.#walk(node.kind === 'with' ? value : dot, node.list, out);
          else if (node.elseList !== undefined) this.#walk(dot, node.elseList, out);
          return;
        }
        case 'range':
          this.#range(dot, node, out);
          return;
        case 'template':
          out.push(this.execute(node.name, node.pipe === undefined ? undefined : this.#pipe(dot, node.pipe)));
          return;
      }
    } finally {
      // Variables declared by an action stay for the rest of the enclosing list; a control's end with it.
      if (node.kind !== 'action') this.#vars.length = mark;
    }
  }

  #range(dot: unknown, node: Control, out: string[]): void {
    const value = this.#pipe(dot, { ...node.pipe, decl: [] });
    let entries: [unknown, unknown][];
    if (value === undefined || value === null) entries = [];
    else if (Array.isArray(value)) entries = value.map((element, i) => [BigInt(i), element]);
    else if (isMap(value))
      entries = Object.keys(value)
        .sort()
        .map((key) => [key, value[key]]);
    else throw new TemplateError(`range can't iterate over ${formatValue(value)}`);
    if (entries.length === 0) {
      if (node.elseList !== undefined) this.#walk(dot, node.elseList, out);
      return;
    }
    const [first, second] = node.pipe.decl;
    for (const [key, element] of entries) {
      const mark = this.#vars.length;
      if (second !== undefined) this.#vars.push({ name: first as string, value: key }, { name: second, value: element });
      else if (first !== undefined) this.#vars.push({ name: first, value: element });
      this.#walk(element, node.list, out);
      this.#vars.length = mark;
    }
  }

  #pipe(dot: unknown, pipe: Pipe): unknown {
    let value: unknown = noFinal;
    for (const cmd of pipe.cmds) {
      value = this.#command(dot, cmd, value);
      // text/template digs an interface{} down to what it holds, so a nil becomes "no value".
      if (value === null) value = undefined;
    }
    for (const name of pipe.decl) {
      if (pipe.isAssign) {
        const variable = this.#vars.findLast((candidate) => candidate.name === name);
        if (variable === undefined) throw new TemplateError(`undefined variable: ${name}`);
        variable.value = value;
      } else {
        this.#vars.push({ name, value });
      }
    }
    return value;
  }

  #variable(name: string): unknown {
    const variable = this.#vars.findLast((candidate) => candidate.name === name);
    if (variable === undefined) throw new TemplateError(`undefined variable: ${name}`);
    return variable.value;
  }

  #command(dot: unknown, cmd: Cmd, final: unknown): unknown {
    const [first, ...args] = cmd as [Arg, ...Arg[]];
    if (first.kind === 'function') return this.#call(dot, first.name, args, final);
    if (args.length > 0 || final !== noFinal) throw new TemplateError(`can't give argument to non-function ${first.kind}`);
    if (first.kind === 'nil') throw new TemplateError('nil is not a command');
    return this.#evaluate(dot, first);
  }

  #evaluate(dot: unknown, arg: Arg): unknown {
    switch (arg.kind) {
      case 'dot':
        return dot;
      case 'field':
        return this.#fields(dot, arg.names);
      case 'variable':
        return this.#fields(this.#variable(arg.name), arg.names);
      case 'chain':
        return this.#fields(this.#pipe(dot, arg.pipe), arg.names);
      case 'pipe':
        return this.#pipe(dot, arg.pipe);
      case 'function':
        return this.#call(dot, arg.name, [], noFinal);
      case 'nil':
        return null;
      case 'string':
      case 'int':
      case 'float':
      case 'bool':
        return arg.value;
    }
  }

  /** A field chain; a missing map key is a nil, and a field of a nil is an error, as under Helm's missingkey=zero. */
  #fields(receiver: unknown, names: string[]): unknown {
    let current = receiver;
    for (const name of names) {
      if (current === undefined) return undefined;
      if (current === null) throw new TemplateError(`nil pointer evaluating interface {}.${name}`);
      if (current instanceof GoStruct) {
        if (!current.fields.has(name)) throw new TemplateError(`can't evaluate field ${name} in type ${current.typeName}`);
        current = current.fields.get(name);
      } else if (isMap(current)) {
        current = Object.hasOwn(current, name) ? current[name] : null;
      } else {
        throw new TemplateError(`can't evaluate field ${name} in type ${goType(current)}`);
      }
    }
    return current;
  }

  #call(dot: unknown, name: string, argNodes: Arg[], final: unknown): unknown {
    const fn = functions[name] as GoFunction;
    const count = argNodes.length + (final === noFinal ? 0 : 1);
    if (fn.variadic === undefined ? count !== fn.params.length : count < fn.params.length) {
      throw new TemplateError(`wrong number of args for ${name}: want ${fn.variadic === undefined ? '' : 'at least '}${fn.params.length} got ${count}`);
    }
    const typeAt = (i: number): ParamType => fn.params[i] ?? fn.variadic ?? 'any';
    if (name === 'and' || name === 'or') {
      // Go 1.18+: evaluation stops at the first operand that decides, which is the result.
      let value: unknown;
      for (const node of argNodes) {
        value = this.#evaluate(dot, node);
        if (truth(value) === (name === 'or')) return value;
      }
      return final === noFinal ? value : final;
    }
    const args = argNodes.map((node, i) => this.#argument(dot, node, typeAt(i)));
    if (final !== noFinal) args.push(checkType(final, typeAt(argNodes.length)));
    try {
      return fn.call(args, this);
    } catch (error) {
      if (error instanceof TemplateError && error.message.startsWith('template: ')) throw error;
      throw new TemplateError(`error calling ${name}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  #argument(dot: unknown, node: Arg, type: ParamType): unknown {
    // Constants are checked against the parameter as Go's evalArg does, before any value exists.
    if (type === 'string' && (node.kind === 'int' || node.kind === 'float' || node.kind === 'bool')) throw new TemplateError(`expected string; found ${String(node.value)}`);
    if (type === 'int' && node.kind === 'float' && Number.isInteger(node.value)) return BigInt(node.value);
    if (type === 'int' && (node.kind === 'float' || node.kind === 'string' || node.kind === 'bool')) throw new TemplateError(`expected integer; found ${String(node.value)}`);
    if (node.kind === 'nil' && (type === 'string' || type === 'int')) throw new TemplateError(`cannot assign nil to ${type}`);
    return checkType(this.#evaluate(dot, node), type);
  }
}

function checkType(value: unknown, type: ParamType): unknown {
  const ok =
    type === 'any' ||
    (type === 'string' && typeof value === 'string') ||
    (type === 'int' && typeof value === 'bigint') ||
    (type === 'map' && (value === undefined || value === null || isMap(value)));
  if (!ok) {
    const expected = { string: 'string', int: 'int', map: 'map[string]interface {}', any: 'interface {}' }[type];
    throw new TemplateError(value === undefined ? `invalid value; expected ${expected}` : `wrong type for value; expected ${expected}; got ${goType(value)}`);
  }
  return value === undefined ? null : value;
}

// ---------------------------------------------------------------------------------------------------------
// Helm: the chart, its values, the render context, the output.

/** Parses YAML as Helm does (go-yaml, YAML 1.1: `on`/`yes` are booleans), refusing duplicate keys. */
export function parseHelmYaml(text: string): unknown {
  return parseYaml(text, { version: '1.1', uniqueKeys: true });
}

/** Helm's value coalescing: maps merge recursively, an override replaces anything else, null deletes. */
export function coalesceValues(defaults: unknown, overrides: unknown): unknown {
  if (!isMap(defaults) || !isMap(overrides)) return overrides === undefined ? defaults : overrides;
  const merged: GoMap = { ...defaults };
  for (const [key, value] of Object.entries(overrides)) merged[key] = coalesceValues(defaults[key], value);
  return Object.fromEntries(Object.entries(merged).filter(([key]) => overrides[key] !== null));
}

// chart.Metadata: the Chart.yaml key behind each Go field, and the field's zero value when the key is absent.
const chartFields: [key: string, field: string, zero: unknown][] = [
  ['apiVersion', 'APIVersion', ''],
  ['name', 'Name', ''],
  ['version', 'Version', ''],
  ['kubeVersion', 'KubeVersion', ''],
  ['description', 'Description', ''],
  ['type', 'Type', ''],
  ['keywords', 'Keywords', null],
  ['home', 'Home', ''],
  ['sources', 'Sources', null],
  ['dependencies', 'Dependencies', null],
  ['maintainers', 'Maintainers', null],
  ['icon', 'Icon', ''],
  ['appVersion', 'AppVersion', ''],
  ['deprecated', 'Deprecated', false],
  ['annotations', 'Annotations', null],
];

export interface RenderOptions {
  /** Values merged over values.yaml, as `helm template -f` / `--set` would. */
  values?: Record<string, unknown>;
  releaseName?: string;
  namespace?: string;
  kubeVersion?: string;
}

export interface RenderedChart {
  /** Merged values, after schema validation. */
  values: Record<string, unknown>;
  /** Rendered text of each manifest template, by path under the chart (`templates/deployment.yaml`). */
  files: Map<string, string>;
  /** templates/NOTES.txt, rendered. */
  notes: string | undefined;
  /**
   * Templates whose output had `<no value>` (a nil printed), which Helm removes silently: mostly a value
   * path with a typo in its last key.
   */
  printedNil: string[];
}

function templateFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

interface LoadedChart {
  name: string;
  metadata: GoStruct;
  defaults: unknown;
  validate: ValidateFunction;
  templates: Map<string, NamedTemplate>;
  /** The template files, by template name (`bulwark/templates/deployment.yaml`). */
  files: string[];
}

// Parsed once per chart and process: compiling the values schema is most of a render's cost.
const loadedCharts = new Map<string, LoadedChart>();

function loadChart(chartDir: string): LoadedChart {
  const cached = loadedCharts.get(chartDir);
  if (cached !== undefined) return cached;
  const meta = parseHelmYaml(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8'));
  if (!isMap(meta)) throw new Error('Chart.yaml is not a mapping');
  // Helm ignores unknown Chart.yaml keys; a typo here should not pass quietly.
  const unknownKeys = Object.keys(meta).filter((key) => !chartFields.some(([known]) => known === key));
  if (unknownKeys.length > 0) throw new Error(`Chart.yaml has unknown fields: ${unknownKeys.join(', ')}`);
  const name = String(meta['name']);
  const schema = JSON.parse(readFileSync(join(chartDir, 'values.schema.json'), 'utf8')) as object;
  const templates = new Map<string, NamedTemplate>();
  const files: string[] = [];
  for (const file of templateFiles(join(chartDir, 'templates'))) {
    const templateName = `${name}/${relative(chartDir, file)}`;
    const parser = new Parser(templateName, readFileSync(file, 'utf8'), functionNames);
    templates.set(templateName, { file: templateName, nodes: parser.parse() });
    for (const [define, nodes] of parser.defines) {
      // Helm lets a later file's define replace an earlier one; that is a bug in a chart this size.
      if (templates.has(define)) throw new TemplateError(`template: multiple definition of template ${JSON.stringify(define)}`);
      templates.set(define, { file: templateName, nodes });
    }
    files.push(templateName);
  }
  const loaded: LoadedChart = {
    name,
    metadata: new GoStruct('*chart.Metadata', Object.fromEntries(chartFields.map(([key, field, zero]) => [field, meta[key] ?? zero]))),
    defaults: parseHelmYaml(readFileSync(join(chartDir, 'values.yaml'), 'utf8')) ?? {},
    // Strict about the schema itself (unknown keywords, loose types) so a typo there cannot disable a check.
    validate: new Ajv({ allErrors: true, strictSchema: true, strictTypes: true, strictTuples: true }).compile(schema),
    templates,
    files,
  };
  loadedCharts.set(chartDir, loaded);
  return loaded;
}

/** `helm template`: values coalesced and validated against values.schema.json, then every template rendered. */
export function renderChart(chartDir: string, options: RenderOptions = {}): RenderedChart {
  const chart = loadChart(chartDir);
  const values = coalesceValues(chart.defaults, options.values ?? {}) as Record<string, unknown>;
  if (!chart.validate(values)) {
    throw new Error(`values don't meet the specifications of the schema(s): ${(chart.validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`).join('; ')}`);
  }

  const [major = '1', minor = '0'] = (options.kubeVersion ?? 'v1.31.0').replace(/^v/, '').split('.');
  const capabilities = new GoStruct('*chartutil.Capabilities', {
    KubeVersion: new GoStruct('chartutil.KubeVersion', { Version: options.kubeVersion ?? 'v1.31.0', Major: major, Minor: minor }),
  });
  const release = { Name: options.releaseName ?? 'bulwark', Namespace: options.namespace ?? 'default', Service: 'Helm', IsInstall: true, IsUpgrade: false, Revision: 1n };
  const files = new Map<string, string>();
  const printedNil: string[] = [];
  let notes: string | undefined;
  for (const name of chart.files) {
    const path = name.slice(chart.name.length + 1);
    if (/(^|\/)_[^/]*$/.test(path)) continue;
    const top = { Values: values, Release: release, Chart: chart.metadata, Capabilities: capabilities, Template: { Name: name, BasePath: `${chart.name}/templates` } };
    const raw = new Exec(chart.templates).execute(name, top);
    if (raw.includes('<no value>')) printedNil.push(path);
    const text = raw.replaceAll('<no value>', '');
    if (path === 'templates/NOTES.txt') notes = text;
    else files.set(path, text);
  }
  return { values, files, notes, printedNil };
}

/** Helm's manifest split (`---` lines), each document parsed as Kubernetes would; empty documents dropped. */
export function parseManifests(files: ReadonlyMap<string, string>): { source: string; manifest: Record<string, unknown> }[] {
  const manifests: { source: string; manifest: Record<string, unknown> }[] = [];
  for (const [source, text] of files) {
    for (const document of parseAllDocuments(text, { version: '1.1', uniqueKeys: true })) {
      const problems = [...document.errors, ...document.warnings];
      if (problems.length > 0) throw new Error(`${source}: ${problems.map((problem) => problem.message).join('; ')}\n${text}`);
      const manifest: unknown = document.toJS();
      if (manifest === null || manifest === undefined) continue;
      if (!isMap(manifest)) throw new Error(`${source}: a document that is not a mapping:\n${text}`);
      manifests.push({ source, manifest });
    }
  }
  return manifests;
}

/** Renders one template string with the chart's functions: the renderer's own tests. */
export function renderTemplateString(source: string, data: unknown, defines = ''): string {
  const templates = new Map<string, NamedTemplate>();
  const parser = new Parser('test', `${defines}${source}`, functionNames);
  templates.set('test', { file: 'test', nodes: parser.parse() });
  for (const [define, nodes] of parser.defines) templates.set(define, { file: 'test', nodes });
  return new Exec(templates).execute('test', data);
}
