import json, os, re, sys
# Per run dir: the edge's CPU-s per 1M frames, the lean client's in the same run, edge ÷ client (the client's
# work is the same for both binaries: it reads the same frames in the same writes, so its CPU per frame
# follows the VM's speed in that run), and edge ÷ the round's floor (one floor run per round, in the
# round's first dir). Usage: python3 normalise.py i1-* i2-* j1-* j2-*
floors = {}
for d in sys.argv[1:]:
    f = os.path.join(d, 'floor.json')
    if os.path.exists(f):
        floors[os.path.basename(d).split('-')[0]] = json.load(open(f))['server_cpu_s_per_1m_frames']
for d in sys.argv[1:]:
    j = json.load(open(os.path.join(d, 'ringside.json')))
    P = j['procs']
    e, c, r = (P[k]['cpu_s_per_1m_frames'] for k in ('edge', 'client', 'redis'))
    fl = floors.get(os.path.basename(d).split('-')[0])
    print(f"| {os.path.basename(d)} | {j['players']} | {e:.2f} | {c:.2f} | {r:.2f} | **{e / c:.3f}** | "
          f"{fl:.2f} | {e / fl:.2f}× |")
