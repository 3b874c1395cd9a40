"""Records how a running InfluxDB 1.x server answers line protocol bodies.

For each body: DROP/CREATE DATABASE p, POST /write?db=p, and when the server accepts it,
read back what it stored (SHOW MEASUREMENTS, SHOW FIELD KEYS, SHOW TAG KEYS, SELECT with
epoch=ns). Prints one JSON object per body: line, status, error or points.

    influxd -config influx.conf   # [http] bind-address = "127.0.0.1:18186", fresh data dirs
    python3 influxd_corpus.py curated influxd-curated-input.txt > influxd-1.6.7-curated.jsonl
    python3 influxd_corpus.py random 20251121 4000 > influxd-1.6.7-random.jsonl

The curated input holds Python string literals separated by lines of `@@`.
"""
import json, random, sys, urllib.parse, urllib.request, time
BASE = "http://127.0.0.1:18186"
def q(s, db="p", epoch=None):
    params = {"q": s}
    if epoch: params["epoch"] = epoch
    data = urllib.parse.urlencode(params).encode()
    with urllib.request.urlopen(urllib.request.Request(BASE + "/query?db=" + db, data=data)) as r:
        return json.load(r)
def write(body, db="p"):
    req = urllib.request.Request(BASE + "/write?db=" + db, data=body.encode("utf-8"), method="POST")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, ""
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()).get("error", "")
def ident(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
def fl(v):
    return repr(float(v))
def probe(line):
    q("DROP DATABASE p"); q("CREATE DATABASE p")
    st, err = write(line)
    out = {"line": line, "status": st}
    if st != 204:
        out["error"] = err
        return out
    try:
        out["points"] = read_points()
    except urllib.error.HTTPError:
        out["points"] = None
    return out

def read_points():
    names = [v[0] for s in q("SHOW MEASUREMENTS")["results"][0].get("series", []) for v in s["values"]]
    points = []
    for name in names:
        ftypes = {}
        for s in q("SHOW FIELD KEYS FROM " + ident(name))["results"][0].get("series", []):
            for k, t in s["values"]: ftypes[k] = t
        tkeys = set()
        for s in q("SHOW TAG KEYS FROM " + ident(name))["results"][0].get("series", []):
            for (k,) in s["values"]: tkeys.add(k)
        res = q("SELECT * FROM " + ident(name), epoch="ns")["results"][0]
        for s in res.get("series", []):
            cols = s["columns"]
            for row in s["values"]:
                p = {"measurement": name, "time": row[0], "tags": {}, "fields": {}}
                for c, v in zip(cols[1:], row[1:]):
                    if v is None: continue
                    if c in tkeys and c not in ftypes:
                        p["tags"][c] = v
                    else:
                        t = ftypes.get(c, "?")
                        if t == "float": v = fl(v)
                        elif t in ("integer", "unsigned"): v = str(v)
                        p["fields"][c] = [t, v]
                points.append(p)
    return points

TOKENS = ["m","cpu","f","g","t","v","x","=","=","=",",",","," "," "," ","\\","\"","\"","1","12","-",".","e","E","+","i","u",
          "t","T","true","False","FALSE","n","N","#","\t","\\ ","\\,","\\=","\\\"","\\\\","0","5","9223372036854775807",
          "9223372036854775808","-9223372036854775808","18446744073709551616","1e3","1e400",".5","5.","a b","é","\x00"]
def rand_line(r):
    if r.random() < 0.5:
        return "".join(r.choice(TOKENS) for _ in range(r.randint(1, 14)))
    names = ["m","cpu","m\\ x","m\\,x","m\\=x","m\\\\x","m\\\\","m\\\"x","#m","é","m=x","\"m\"","m\\q"]
    keys = ["k","host","a","b","k\\ x","k\\,x","k\\=x","k\\\\","k\\\"","\"k\"","=k","k=","","time"]
    vals = ["v","server01","v\\ x","v\\,x","v\\=x","v\\\\","=","v=","","v\\\"x","\"v\"","é"]
    fkeys = ["f","g","value","f\\ x","f\\,x","f\\=x","f\\\\","f\\\"x","\"f\"","","f\\q","time"]
    fvals = ["1","-1.5",".5","5.","1e3","-1e-3","1E+2","12i","-12i","12u","0u","t","F","true","FALSE","\"s\"","\"\"",
             "\"a\\\"b\"","\"a\\\\\"","\"a,b c=d\"","\"a\\q\"","NaN","inf","1.2.3","1i2","\"x","x","-","9223372036854775807i",
             "9223372036854775808i","18446744073709551615u","18446744073709551616u","1e400","123456789012345678901234567"]
    s = r.choice(names)
    for _ in range(r.choice([0,0,1,1,2,3])):
        s += "," + r.choice(keys) + "=" + r.choice(vals)
    s += r.choice([" "," "," ","  "," \t"])
    s += ",".join(r.choice(fkeys) + "=" + r.choice(fvals) for _ in range(r.choice([1,1,2,3])))
    ts = r.choice(["", "", " 1", " -1", " 1700000000000000000", " 9223372036854775807", " -9223372036854775806", " 1a", " 1 ", " 1 x", "  2", " -", " 0"])
    return s + ts

if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "curated":
        lines = [eval(l) for l in open(sys.argv[2]).read().split("\n@@\n") if l.strip()]
    else:
        r = random.Random(int(sys.argv[2])); n = int(sys.argv[3])
        lines = []
        seen = set()
        while len(lines) < n:
            l = rand_line(r)
            if "\n" in l or l in seen: continue
            seen.add(l); lines.append(l)
    t = time.time()
    for l in lines:
        print(json.dumps(probe(l), ensure_ascii=False))
    print(time.time() - t, file=sys.stderr)
