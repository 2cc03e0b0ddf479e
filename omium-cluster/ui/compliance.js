// Compliance: the audit trail (filtered, paged, exported as CSV or JSON from the entries shown),
// verification of checksums and the audit hash chain against a recorded head, erasure of an
// execution (data-subject requests), and the monthly report.
// API: audit {before, limit: 100, action (prefix), actor, resource (substring)} ->
//      {entries (newest first), next_before, head}; audit_head {}; verify {expect_head?};
//      control {action: "delete", execution_id, reason, by}; report {period, format:
//      "json"|"html"|"pdf"|"csv"} (json: the structure; the others: a download).

import { call, download, ApiError } from '/ui/api.js';
import { h, replace, fmt, badge, errorBox, loading, panel, kv, jsonView, toast, toastError, confirmDialog, actionButton, saveBlob, query, setQuery } from '/ui/ui.js';
import { by } from '/ui/execution.js';

const LIMIT = 100;

export async function render(root, ctx) {
  const verifyBox = h('div');
  const reportBox = h('div');
  const eraseBox = h('div');
  const auditBox = h('div');
  root.append(
    h('div', { class: 'page-head' }, h('h1', { 'data-test': 'page-title' }, 'Compliance'), h('span', { class: 'sub' }, 'audit trail, integrity, erasure and reports')),
    h('div', { class: 'grid grid-3' }, verifyBox, reportBox, eraseBox),
    auditBox);
  drawVerify();
  drawReport();
  drawErase();
  drawAudit();
  return undefined;

  // ---- verify ----

  function drawVerify() {
    const headEl = h('div', { 'data-test': 'audit-head' }, loading());
    const expect = h('input', { class: 'input wide mono', 'data-test': 'verify-expect', placeholder: 'a recorded head SEQ:HASH (optional)' });
    const result = h('div', { 'data-test': 'verify-result' });
    call('audit_head', {}).then((hd) => {
      replace(headEl, hd ? [h('div', { class: 'small muted' }, `seq ${hd.seq}`), h('code', { class: 'small', style: 'word-break:break-all' }, `${hd.seq}:${hd.hash}`),
        h('div', null, h('button', { class: 'btn btn-sm', style: 'margin-top:6px', onclick: () => { navigator.clipboard && navigator.clipboard.writeText(`${hd.seq}:${hd.hash}`).then(() => toast('copied the audit head', 'ok')).catch(() => {}); } }, 'Copy'))]
        : h('span', { class: 'muted' }, 'Nothing audited yet.'));
    }).catch((e) => replace(headEl, errorBox(e, 'audit_head')));
    const run = async () => {
      replace(result, loading('Verifying every checkpoint and the audit chain…'));
      try {
        const args = {};
        if (expect.value.trim()) args.expect_head = expect.value.trim();
        const r = await call('verify', args);
        const problems = [...(r.problems || []), ...((r.audit && r.audit.problems) || [])];
        const ok = r.ok !== undefined ? r.ok : problems.length === 0;
        result.dataset.ok = ok ? 'true' : 'false';
        replace(result,
          h('div', { class: ok ? 'ok-line' : 'form-error', style: 'margin:6px 0' }, ok ? '✓ Verified: no problem found.' : `✗ ${problems.length} problem${problems.length === 1 ? '' : 's'} found.`),
          kv([
            ['executions', fmt.num(r.executions)],
            ['checkpoints', fmt.num(r.checkpoints)],
            ['audit entries', fmt.num(r.audit && r.audit.entries)],
            ['audit head', r.audit && r.audit.head ? h('code', { class: 'small', style: 'word-break:break-all' }, `${r.audit.head.seq}:${r.audit.head.hash}`) : '—'],
          ]),
          problems.length ? h('ul', { class: 'err-list' }, problems.map((p) => h('li', null, typeof p === 'string' ? p : JSON.stringify(p)))) : null);
        toast(`verify: ${ok ? 'ok' : `${problems.length} problems`}`, ok ? 'ok' : 'error');
      } catch (e) {
        result.dataset.ok = 'false';
        replace(result, errorBox(e, 'verify'));
      }
    };
    replace(verifyBox, panel('Integrity', [
      h('div', { class: 'section-title' }, 'Audit head (keep it elsewhere to check later)'), headEl,
      h('div', { class: 'section-title' }, 'Verify checksums, chunks and the hash chain'),
      expect,
      h('div', { class: 'row', style: 'margin-top:8px' }, h('button', { class: 'btn btn-primary btn-sm', 'data-test': 'action-verify', onclick: run }, 'Run verify')),
      result]));
  }

  // ---- report ----

  function drawReport() {
    const now = new Date();
    const month = `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
    const period = h('input', { type: 'month', class: 'input', 'data-test': 'report-period', value: month, 'aria-label': 'Month' });
    const summary = h('div', { 'data-test': 'report-summary' });
    const get = async (format, btn) => {
      const p = period.value || month;
      btn.disabled = true;
      const label = btn.textContent;
      btn.textContent = '…';
      try {
        const { blob, name } = await download('report', { period: p, format }, `omium-report-${p}.${format}`);
        saveBlob(blob, name);
        toast(`report: ${name} downloaded (${fmt.bytes(blob.size)})`, 'ok');
      } catch (e) {
        toastError(e, 'report');
      } finally { btn.disabled = false; btn.textContent = label; }
    };
    const btn = (format, label) => {
      const b = h('button', { class: 'btn btn-sm', 'data-test': `report-${format}`, onclick: () => get(format, b) }, label);
      return b;
    };
    const preview = async () => {
      replace(summary, loading('Building the report…'));
      try {
        const r = await call('report', { period: period.value || month, format: 'json' });
        replace(summary, reportSummary(r));
      } catch (e) {
        replace(summary, errorBox(e, e instanceof ApiError && e.unknownMethod ? 'This server cannot build reports' : 'report'));
      }
    };
    replace(reportBox, panel('Monthly report', [
      h('p', { class: 'muted small', style: 'margin-top:0' }, 'Executions, success rate and latency, incidents and their recoveries, MTTR, LLM spend and cost saved, policy changes, who did what, and the result of verify.'),
      h('div', { class: 'row' }, period, btn('pdf', 'PDF'), btn('html', 'HTML'), btn('csv', 'CSV'),
        h('button', { class: 'btn btn-sm btn-ghost', 'data-test': 'report-preview', onclick: preview }, 'Preview')),
      summary]));
  }

  function reportSummary(r) {
    // The JSON report's structure belongs to the server: show its scalar figures, then the rest.
    const scalars = [];
    const walk = (o, prefix, depth) => {
      if (!o || typeof o !== 'object' || depth > 2) return;
      for (const [k, v] of Object.entries(o)) {
        if (v === null || typeof v !== 'object') { if (scalars.length < 24) scalars.push([`${prefix}${k}`, typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(4) : String(v)]); }
        else if (!Array.isArray(v)) walk(v, `${prefix}${k}.`, depth + 1);
        else if (scalars.length < 24) scalars.push([`${prefix}${k}`, `${v.length} item${v.length === 1 ? '' : 's'}`]);
      }
    };
    walk(r, '', 0);
    return h('div', { style: 'margin-top:10px' }, kv(scalars), h('details', null, h('summary', { class: 'small muted', style: 'cursor:pointer;margin-top:6px' }, 'the whole report (JSON)'), jsonView(r)));
  }

  // ---- erasure ----

  function drawErase() {
    const input = h('input', { class: 'input wide mono', 'data-test': 'erase-id', placeholder: 'execution id' });
    const out = h('div');
    const erase = async () => {
      const id = input.value.trim();
      if (!id) { toast('Enter the id of the execution to erase.', 'error'); return; }
      const ok = await confirmDialog({
        title: `Erase ${id}?`,
        body: [h('p', null, 'Its record, checkpoints, input and output, and the chunks no other checkpoint uses are deleted for good. The audit log keeps who erased it, why, and how much was erased.'), h('p', { class: 'muted' }, 'Give the request’s reference as the reason.')],
        confirmLabel: 'Erase', danger: true,
      });
      if (!ok) return;
      try {
        const r = await call('control', { action: 'delete', execution_id: id, reason: ok.reason || undefined, by: by() });
        const er = r.erased || {};
        toast(`erase: ${r.result || 'applied'} — ${id}: ${er.checkpoints ?? '?'} checkpoints, ${er.chunks ?? 0} chunks erased`, 'ok');
        replace(out, h('div', { class: 'note', style: 'margin-top:8px' }, `Erased ${id}: ${JSON.stringify(er)}`));
        input.value = '';
        drawAudit();
      } catch (e) { toastError(e, 'erase'); }
    };
    replace(eraseBox, panel('Erasure (data-subject requests)', [
      h('p', { class: 'muted small', style: 'margin-top:0' }, 'Delete an execution and everything it stored. Needs the admin role.'),
      input,
      h('div', { class: 'row', style: 'margin-top:8px' }, actionButton({ test: 'action-delete', label: 'Erase…', method: 'control.delete', kind: 'btn-danger btn-sm', onclick: erase })),
      out]));
  }

  // ---- audit trail ----

  function drawAudit() {
    const q = query();
    const f = { action: q.get('action') || '', actor: q.get('actor') || '', resource: q.get('resource') || '' };
    const aIn = h('input', { class: 'input', 'data-test': 'audit-filter-action', placeholder: 'action prefix (execution., rollback…)', value: f.action, style: 'width:210px' });
    const acIn = h('input', { class: 'input', 'data-test': 'audit-filter-actor', placeholder: 'actor (exact)', value: f.actor, style: 'width:150px' });
    const rIn = h('input', { class: 'input', 'data-test': 'audit-filter-resource', placeholder: 'resource contains', value: f.resource, style: 'width:180px' });
    const list = h('div', { class: 'table-wrap' });
    const info = h('span', { class: 'muted small' });
    const older = h('button', { class: 'btn btn-sm', 'data-test': 'audit-older', onclick: () => { if (nextBefore) { stack.push(nextBefore); load(); } } }, 'Older →');
    const newest = h('button', { class: 'btn btn-sm', 'data-test': 'audit-newest', onclick: () => { stack = [null]; load(); } }, '⇤ Newest');
    const csv = h('button', { class: 'btn btn-sm', 'data-test': 'audit-csv', onclick: () => exportAs('csv') }, 'Export CSV');
    const json = h('button', { class: 'btn btn-sm', 'data-test': 'audit-json', onclick: () => exportAs('json') }, 'Export JSON');
    let stack = [null];
    let nextBefore = null;
    let shown = [];
    let token = 0;
    const form = h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); f.action = aIn.value.trim(); f.actor = acIn.value.trim(); f.resource = rIn.value.trim(); stack = [null]; load(); } },
      aIn, acIn, rIn, h('button', { class: 'btn btn-primary btn-sm', type: 'submit', 'data-test': 'audit-apply' }, 'Filter'), h('span', { class: 'spacer' }), csv, json);
    replace(auditBox, h('section', { class: 'panel flush' },
      h('div', { class: 'panel-head' }, h('h2', null, 'Audit trail'), h('div', { class: 'panel-tools' }, h('span', { class: 'muted small' }, 'newest first · every entry is chained to the one before by its hash'))),
      form, list, h('div', { class: 'pager' }, newest, older, info)));

    async function load() {
      const my = ++token;
      setQuery(f);
      replace(list, loading());
      try {
        const args = { limit: LIMIT, before: stack[stack.length - 1] };
        if (f.action) args.action = f.action;
        if (f.actor) args.actor = f.actor;
        if (f.resource) args.resource = f.resource;
        const r = await call('audit', args);
        if (my !== token) return;
        shown = r.entries || [];
        nextBefore = r.next_before ?? null;
        older.disabled = nextBefore === null;
        newest.disabled = stack.length <= 1;
        csv.disabled = json.disabled = !shown.length;
        info.textContent = shown.length ? `seq ${shown[0].seq} … ${shown[shown.length - 1].seq} · ${shown.length} entries${r.head ? ` · head ${r.head.seq}` : ''}` : '';
        replace(list, shown.length ? table(shown) : h('div', { class: 'empty' }, nextBefore !== null ? 'No entry matches in this stretch of the log; look further with Older.' : 'No entry matches.'));
      } catch (e) {
        if (my !== token) return;
        shown = [];
        csv.disabled = json.disabled = true;
        older.disabled = true;
        if (e instanceof ApiError && e.unknownMethod) replace(list, h('div', { style: 'padding:12px' }, errorBox(e, 'This server has no audit method'), h('div', { class: 'muted small' }, 'The live feed shows the same log as events.')));
        else replace(list, h('div', { style: 'padding:12px' }, errorBox(e, 'audit')));
      }
    }

    function table(entries) {
      return h('table', { class: 'table fixed', 'data-test': 'audit-table' },
        h('colgroup', null, [64, 165, 140, 200, 230, null, 96].map((w) => h('col', { style: w ? `width:${w}px` : '' }))),
        h('thead', null, h('tr', null, ['Seq', 'Time', 'Actor', 'Action', 'Resource', 'Detail', 'Hash'].map((c) => h('th', null, c)))),
        h('tbody', null, entries.map((e) => {
          const res = e.resource || '';
          const exec = res.startsWith('execution/') ? res.slice(10) : null;
          return h('tr', { 'data-test': 'audit-row', 'data-seq': e.seq },
            h('td', { class: 'num muted' }, e.seq),
            h('td', { class: 'nowrap muted', title: new Date(e.at_ms).toISOString() }, fmt.time(e.at_ms)),
            h('td', { class: 'nowrap' }, e.actor),
            h('td', { class: 'nowrap' }, h('code', null, e.action), /deny|unauthenticated|delete/.test(e.action) ? [' ', badge(e.action.includes('delete') ? 'erasure' : 'denied', 'bad')] : null),
            h('td', { class: 'mono small nowrap' }, exec ? h('a', { href: `#/execution/${encodeURIComponent(exec)}` }, res) : res),
            h('td', { class: 'mono small ellipsis', title: e.detail }, e.detail),
            h('td', { class: 'mono small faint', title: `hash ${e.hash}\nprev ${e.prev_hash}` }, (e.hash || '').slice(0, 10)));
        })));
    }

    function exportAs(kind) {
      if (!shown.length) return;
      const stamp = `${shown[shown.length - 1].seq}-${shown[0].seq}`;
      if (kind === 'json') {
        saveBlob(new Blob([JSON.stringify(shown, null, 2)], { type: 'application/json' }), `omium-audit-${stamp}.json`);
      } else {
        const cols = ['seq', 'at_ms', 'time', 'actor', 'action', 'resource', 'detail', 'prev_hash', 'hash'];
        const cell = (v) => { const t = v === null || v === undefined ? '' : String(v); return /[",\n\r]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t; };
        const lines = [cols.join(','), ...shown.map((e) => cols.map((c) => cell(c === 'time' ? new Date(e.at_ms).toISOString() : e[c])).join(','))];
        saveBlob(new Blob([`${lines.join('\r\n')}\r\n`], { type: 'text/csv' }), `omium-audit-${stamp}.csv`);
      }
      toast(`export: ${shown.length} audit entries as ${kind.toUpperCase()}`, 'ok');
    }

    load();
  }
}
