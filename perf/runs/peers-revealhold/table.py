import json,sys,os,re
for d in sys.argv[1:]:
    for srv in ('ringside','floor'):
        f=os.path.join(d,srv+'.json')
        if not os.path.exists(f): continue
        j=json.load(open(f)); meta=open(os.path.join(d,srv+'.meta.txt')).read()
        load=re.search(r'loadavg (\S+)',meta).group(1); start=re.search(r'utc_start (\S+)',meta).group(1)[11:19]
        k=j['kinds']; P=j['procs']
        lat=lambda n: '%s / %s'%(k[n]['latency']['p50_ms'],k[n]['latency']['p99_ms']) if n in k and k[n]['latency'] else '-'
        if srv=='ringside':
            m=dict(l.split() for l in open(os.path.join(d,'ringside.metrics.txt')))
            wpf=int(m['ringside_edge_writes_total'])/int(m['ringside_edge_frames_out_total'])
            print(f"| {os.path.basename(d)} | {start} | {load} | {P['edge']['cpu_s_per_1m_frames']} | {P['redis']['cpu_s_per_1m_frames']} | {P['engine']['cpu_s_per_1m_frames']} | {wpf:.3f} | {lat('game:question:show')} | {lat('game:question:reveal')} | {lat('game:leaderboard')} | {lat('game:answer:result')} |")
        else:
            print(f"| {os.path.basename(d)} floor | {start} | {load} | server {j['server_cpu_s_per_1m_frames']} | | | | {j['question_ms']['p50']} / {j['question_ms']['p99']} | | | |")
