"""Assemble hand-written source files (src/) into JSONL and validate.
This script only numbers rows, serialises them, and locates hand-written span values
in hand-written texts; it does not generate or alter any text."""
import json, re, os, sys, glob, collections
ROOT = os.path.dirname(os.path.abspath(__file__))
HDR = re.compile(r'^@@ (user|tool|model)$')

def parse_rows(path):
    rows, cur = [], None
    for line in open(path, encoding='utf-8').read().split('\n'):
        m = HDR.match(line)
        if m:
            if cur: rows.append(cur)
            cur = [m.group(1), []]
        elif cur is not None:
            cur[1].append(line)
    if cur: rows.append(cur)
    out = []
    for ch, lines in rows:
        t = '\n'.join(lines).strip('\n')
        out.append((ch, t))
    return out

HN_CATS = ["policy_doc","security_writeup","user_imperative","markdown_links","code","model_answer",
           "encoded_ids","multilingual_ticket","web_page","email","benign_unicode","task_description",
           "roleplay_fiction","system_prompt_like"]
AT_CATS = ["direct_override","roleplay_jailbreak","prompt_leak","tool_coercion","embedded_task","multilingual",
           "obfuscated","exfiltration","context_manipulation","social_engineering","payload_splitting","indirect_web"]

def build_cls(cats, srcdir, prefix, label, outname):
    recs = []
    for c in cats:
        rows = parse_rows(os.path.join(ROOT, 'src', srcdir, c + '.txt'))
        for i, (ch, t) in enumerate(rows, 1):
            recs.append({"id": f"{prefix}-{c}-{i:02d}", "category": c, "channel": ch, "text": t, "label": label})
    with open(os.path.join(ROOT, outname), 'w', encoding='utf-8') as f:
        for r in recs: f.write(json.dumps(r, ensure_ascii=False) + '\n')

def isword(ch): return ch.isalnum()

def build_pii():
    recs = []
    files = sorted(glob.glob(os.path.join(ROOT, 'src', 'pii', 'p*.txt')))
    n = 0; errors = 0
    for fp in files:
        blocks = open(fp, encoding='utf-8').read().split('\n@@\n')
        blocks[0] = blocks[0].split('@@\n', 1)[1] if blocks[0].startswith('@@\n') else blocks[0]
        for b in blocks:
            if not b.strip(): continue
            tl, sl = [], []
            for line in b.split('\n'):
                (sl if line.startswith('%% ') else tl).append(line)
            text = '\n'.join(tl).strip('\n')
            spans_req = []
            for s in sl:
                typ, val = s[3:].split(' | ', 1)
                spans_req.append((typ.strip(), val.replace('\\n', '\n')))
            taken = []
            placed = []
            # longest values first so that short names don't land inside longer spans
            order = sorted(range(len(spans_req)), key=lambda k: -len(spans_req[k][1]))
            for k in order:
                typ, val = spans_req[k]
                pos = 0; found = None
                while True:
                    i = text.find(val, pos)
                    if i < 0: break
                    j = i + len(val)
                    ok_b = (i == 0 or not isword(text[i-1]) or not isword(val[0])) and (j == len(text) or not isword(text[j]) or not isword(val[-1]))
                    overl = any(not (j <= a or i >= e) for a, e in taken)
                    if ok_b and not overl:
                        found = (i, j); break
                    pos = i + 1
                if not found:
                    print('NOT FOUND', fp, repr(val), '| text:', text[:60]); errors += 1; continue
                taken.append(found)
                placed.append({"start": found[0], "end": found[1], "type": typ, "value": val})
            placed.sort(key=lambda s: s['start'])
            n += 1
            recs.append({"id": f"pii-{n:03d}", "text": text, "spans": placed})
    with open(os.path.join(ROOT, 'pii.jsonl'), 'w', encoding='utf-8') as f:
        for r in recs: f.write(json.dumps(r, ensure_ascii=False) + '\n')
    return errors

def luhn(num):
    d = [int(c) for c in num if c.isdigit()]
    s = 0
    for i, x in enumerate(reversed(d)):
        if i % 2: x = x * 2; x = x - 9 if x > 9 else x
        s += x
    return s % 10 == 0

def iban_ok(v):
    s = v.replace(' ', '')
    s = s[4:] + s[:4]
    n = ''.join(str(int(c, 36)) for c in s)
    return int(n) % 97 == 1

def validate():
    ok = True
    TYPES = {"PERSON","PHONE","SSN","ADDRESS","DATE_OF_BIRTH","IBAN","CREDIT_CARD","EMAIL","IP_ADDRESS","SECRET"}
    for name, lab, cats in [('hard_negatives.jsonl', 0, HN_CATS), ('attacks.jsonl', 1, AT_CATS)]:
        ids = set(); cnt = collections.Counter(); chc = collections.Counter()
        for ln, line in enumerate(open(os.path.join(ROOT, name), encoding='utf-8'), 1):
            r = json.loads(line)
            assert set(r) == {"id","category","channel","text","label"}, (name, ln, r.keys())
            assert r['id'] not in ids, r['id']; ids.add(r['id'])
            assert r['category'] in cats, r
            assert r['channel'] in ('user','tool','model'), r
            assert r['label'] == lab, r
            assert isinstance(r['text'], str) and 1 <= len(r['text']) <= 1500, (r['id'], len(r['text']))
            cnt[r['category']] += 1; chc[r['channel']] += 1
        print(f"\n{name}: {sum(cnt.values())} rows; channels {dict(chc)}")
        for c in cats: print(f"  {c:24s} {cnt[c]}")
    ids = set(); tc = collections.Counter(); nrec = 0
    for line in open(os.path.join(ROOT, 'pii.jsonl'), encoding='utf-8'):
        r = json.loads(line); nrec += 1
        assert set(r) == {"id","text","spans"}
        assert r['id'] not in ids; ids.add(r['id'])
        last = -1
        for s in r['spans']:
            assert s['type'] in TYPES, s
            assert r['text'][s['start']:s['end']] == s['value'], (r['id'], s)
            assert s['start'] >= last, ('overlap', r['id'], s); last = s['end']
            tc[s['type']] += 1
            if s['type'] == 'CREDIT_CARD' and not luhn(s['value']): print('LUHN FAIL', r['id'], s['value']); ok = False
            if s['type'] == 'IBAN' and not iban_ok(s['value']): print('IBAN checksum fail (format only)', r['id'], s['value'])
    print(f"\npii.jsonl: {nrec} records; spans by type:")
    for t in sorted(TYPES): print(f"  {t:14s} {tc[t]}")
    return ok

if __name__ == '__main__':
    build_cls(HN_CATS, 'hn', 'hn', 0, 'hard_negatives.jsonl')
    build_cls(AT_CATS, 'at', 'at', 1, 'attacks.jsonl')
    e = build_pii()
    ok = validate()
    print('\nPII locate errors:', e, '| all checks passed' if ok and not e else '| PROBLEMS')
