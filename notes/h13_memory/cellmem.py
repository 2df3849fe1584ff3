"""Run a notebook's code cells in plain Python, printing memory after each cell."""
import json, sys, resource, time, threading
nb = json.load(open(sys.argv[1]))
params = dict(a.split("=", 1) for a in sys.argv[2:])
def st():
    s = {l.split(":")[0]: int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith(("RssAnon", "RssFile", "VmRSS", "VmHWM"))}
    return s
peak = {"anon": 0}
def poll():
    while True:
        peak["anon"] = max(peak["anon"], st()["RssAnon"]); time.sleep(0.05)
threading.Thread(target=poll, daemon=True).start()
g = {"__name__": "__main__", "get_ipython": lambda: None}
import IPython.display
for i, c in enumerate(nb["cells"]):
    if c["cell_type"] != "code": continue
    src = "".join(c["source"])
    src = "\n".join(l for l in src.splitlines() if not l.startswith(("%", "!")))
    t = time.time()
    exec(compile(src, f"cell{i}", "exec"), g)
    if "parameters" in c.get("metadata", {}).get("tags", []):
        for k, v in params.items(): exec(f"{k} = {v}", g)
    s = st()
    print(f"MEM cell{i:02d} {time.time()-t:6.1f}s anon={s['RssAnon']} file={s['RssFile']} hwm={s['VmHWM']} peakanon={peak['anon']} :: {src.splitlines()[0][:60]}", file=sys.stderr, flush=True)
