import json,sys,os,re
# | run | UTC | load | edge CPU-s/1M | x floor | redis | writes/frame | pings (alone) | show p50/p99 | reveal | lb | result | edge user/sys
for d in sys.argv[1:]:
    f=os.path.join(d,'ringside.json')
    if not os.path.exists(f): continue
    j=json.load(open(f)); meta=open(os.path.join(d,'ringside.meta.txt')).read()
    load=re.search(r'loadavg (\S+)',meta).group(1); start=re.search(r'utc_start (\S+)',meta).group(1)[11:19]
    k=j['kinds']; P=j['procs']
    lat=lambda n: '%.0f / %.0f'%(k[n]['latency']['p50_ms'],k[n]['latency']['p99_ms'])
    m=dict(l.split() for l in open(os.path.join(d,'ringside.metrics.txt')))
    wpf=int(m['ringside_edge_writes_total'])/int(m['ringside_edge_frames_out_total'])
    pings='%s (%s)'%(m.get('ringside_edge_pings_total','-'),m.get('ringside_edge_pings_released_total',m.get('ringside_edge_pings_alone_total','-')))
    fl=''
    ff=os.path.join(d,'floor.json')
    if os.path.exists(ff):
        fj=json.load(open(ff)); fm=open(os.path.join(d,'floor.meta.txt')).read()
        fl='floor %s (%s, load %s)'%(fj['server_cpu_s_per_1m_frames'],re.search(r'utc_start (\S+)',fm).group(1)[11:19],re.search(r'loadavg (\S+)',fm).group(1))
    print(f"| {os.path.basename(d)} | {start} | {load} | **{P['edge']['cpu_s_per_1m_frames']}** | {P['edge']['user_s']} / {P['edge']['sys_s']} | {P['redis']['cpu_s_per_1m_frames']} | {P['client']['cpu_s_per_1m_frames']} | {wpf:.3f} | {pings} | {lat('game:question:show')} | {lat('game:question:reveal')} | {lat('game:leaderboard')} | {lat('game:answer:result')} | {fl} |")
