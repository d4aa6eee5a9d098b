import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { coalesceValues, GoStruct, parseHelmYaml, renderTemplateString } from './helm.ts';

// Go text/template and Helm behaviour the chart could observe; expected outputs are what `helm template` gives.
const values = parseHelmYaml(`
count: 3
big: 1000000
half: 1.5
tiny: 0.00001
s: text
empty: ""
flag: false
zero: 0
nothing: null
list: [b, a]
map: {z: 1, a: 2}
yes11: on
`);
const top = { Values: values, Chart: new GoStruct('*chart.Metadata', { Name: 'bulwark', AppVersion: '1.2.3' }) };
const render = (template: string, defines = '') => renderTemplateString(template, top, defines);

describe('the Helm renderer', () => {
  it('prints values as Go does: values are float64, literals int', () => {
    assert.equal(render('{{ .Values.count }} {{ .Values.big }} {{ .Values.half }} {{ .Values.tiny }} {{ 1000000 }}'), '3 1e+06 1.5 1e-05 1000000');
    assert.equal(render('{{ .Values.list }} {{ .Values.map }} {{ .Values.flag }}'), '[b a] map[a:2 z:1] false');
    assert.equal(render('{{ .Values.yes11 }}'), 'true', 'values.yaml is YAML 1.1, as go-yaml reads it');
    assert.throws(() => parseHelmYaml('n: 1\noff: 2'), /unique/, 'in YAML 1.1 the keys n and off are both false');
    assert.throws(() => render('{{ eq 3 .Values.count }}'), /incompatible types for comparison: int and float64/);
    assert.equal(render('{{ eq 3.0 .Values.count }} {{ eq "text" .Values.s }} {{ eq .Values.missing "x" }}'), 'true true false');
    assert.throws(() => render('{{ nindent .Values.count "x" }}'), /expected int; got float64/);
    assert.equal(render('{{ nindent 2.0 "x" }}'), '\n  x', 'an integral float constant is an int argument');
  });

  it('treats a missing key as nil, and a field of nil as an error unless it is reached through a variable', () => {
    assert.equal(render('[{{ .Values.missing }}][{{ .Values.nothing }}]'), '[<no value>][<no value>]');
    assert.throws(() => render('{{ .Values.missing.x }}'), /nil pointer evaluating interface \{\}\.x/);
    assert.throws(() => render('{{ .Values.nothing.x }}'), /nil pointer evaluating interface \{\}\.x/);
    assert.equal(render('{{ $v := .Values.missing }}{{ $v.x }}'), '<no value>');
    assert.throws(() => render('{{ .Chart.appVersion }}'), /can't evaluate field appVersion in type \*chart\.Metadata/);
    assert.throws(() => render('{{ .Values.s.x }}'), /can't evaluate field x in type string/);
  });

  it('short-circuits and/or and returns the deciding operand', () => {
    assert.equal(render('[{{ and .Values.missing .Values.missing.x }}][{{ or .Values.empty .Values.s }}][{{ and .Values.s .Values.count }}]'), '[<no value>][text][3]');
  });

  it('controls: if/else if/else, with/else, range over lists and sorted maps, range else', () => {
    assert.equal(render('{{ if .Values.flag }}a{{ else if .Values.zero }}b{{ else if .Values.s }}c{{ else }}d{{ end }}'), 'c');
    assert.equal(render('{{ with .Values.map }}{{ .z }}{{ else }}none{{ end }}{{ with .Values.empty }}x{{ else }}none{{ end }}'), '1none');
    assert.equal(render('{{ range $i, $v := .Values.list }}{{ $i }}={{ $v }} {{ end }}{{ range $k, $v := .Values.map }}{{ $k }}={{ $v }} {{ end }}'), '0=b 1=a a=2 z=1 ');
    assert.equal(render('{{ range .Values.missing }}x{{ else }}none{{ end }}'), 'none');
    assert.equal(render('{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ $y := 3 }}{{ end }}{{ $x }}'), '2');
    assert.throws(() => render('{{ if true }}{{ $y := 3 }}{{ end }}{{ $y }}'), /undefined variable "\$y"/);
  });

  it('trims whitespace at {{- and -}} and drops comments', () => {
    assert.equal(render('a \n {{- .Values.s -}} \n b'), 'atextb');
    assert.equal(render('a {{- /* note */ -}} b|{{/* note */}}c'), 'ab|c');
    assert.equal(render('{{ 3 -}} {{- -4 }}'), '3-4', 'a minus without a space is a number');
  });

  it('define, include, template; a template of its own variables', () => {
    const defines = '{{- define "name" -}}{{ .Chart.Name }}-{{ $.Values.s }}{{- end -}}{{- define "list" -}}a: 1\nb: 2{{- end -}}';
    assert.equal(render('{{ include "name" . }}', defines), 'bulwark-text');
    assert.equal(render('x:{{ include "list" . | nindent 2 }}', defines), 'x:\n  a: 1\n  b: 2');
    assert.equal(render('{{ template "name" . }}', defines), 'bulwark-text');
    assert.throws(() => render('{{ include "nope" . }}'), /no template "nope"/);
  });

  it('the sprig and Helm functions behave as theirs, gotchas included', () => {
    assert.equal(render('{{ default "d" .Values.empty }} {{ default "d" .Values.flag }} {{ default "d" .Values.zero }} {{ default "d" .Values.s }}'), 'd d d text');
    assert.equal(render('{{ required "need it" .Values.flag }} {{ required "need it" .Values.zero }}'), 'false 0');
    assert.throws(() => render('{{ required "need s2" .Values.s2 }}'), /need s2/);
    assert.throws(() => render('{{ required "need empty" .Values.empty }}'), /need empty/);
    assert.equal(render('[{{ .Values.missing | quote }}] {{ quote .Values.count }} {{ "a\\"b\\n" | quote }}'), '[] "3" "a\\"b\\n"');
    assert.equal(render('{{ printf "%s-%d-%v" .Values.s 7 .Values.count }} {{ printf "%d" .Values.count }}'), 'text-7-3 %!d(float64=3)');
    assert.equal(render('{{ trunc 3 "abcdef" }} {{ trimSuffix "-" "ab-" }} {{ b64enc "hi" }} {{ contains "b" "abc" }} {{ hasKey .Values.map "z" }}'), 'abc ab aGk= true true');
    assert.equal(render('{{ toYaml .Values.map }}|{{ toYaml (list "on" "1" "a: b") }}'), 'a: 2\nz: 1|- "on"\n- "1"\n- "a: b"');
    assert.equal(render('{{ toJson (dict "b" "<x>" "a" 1) }}'), '{"a":1,"b":"\\u003cx\\u003e"}');
    assert.equal(render('{{ sha256sum "x" }}'), '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881');
  });

  it('refuses what it does not implement, and Go syntax errors, at parse time', () => {
    assert.throws(() => render('{{ if false }}{{ upper "x" }}{{ end }}'), /function "upper" not defined/);
    assert.throws(() => render('{{ block "x" . }}{{ end }}'), /not supported/);
    assert.throws(() => render('{{ if .Values.s }}x'), /unexpected EOF/);
    assert.throws(() => render('{{ end }}'), /unexpected \{\{end\}\}/);
    assert.throws(() => render('{{ .Values.s .Values.count }}'), /can't give argument to non-function/);
    assert.throws(() => render('{{ "a" | "b" }}'), /non executable command in pipeline stage 2/);
    assert.throws(() => render('{{ .Values.s"x" }}'), /bad character/);
    assert.throws(() => render('{{ print (.Values.s)(.Values.s) }}'), /missing space/);
    assert.throws(() => render('{{ $undefined }}'), /undefined variable/);
  });

  it('coalesces values as Helm does: maps merge, an override replaces, null deletes', () => {
    assert.deepEqual(coalesceValues({ a: { b: 1, c: 2 }, d: [1], e: 'x' }, { a: { c: 3 }, d: [2], e: null, f: true }), { a: { b: 1, c: 3 }, d: [2], f: true });
  });
});
