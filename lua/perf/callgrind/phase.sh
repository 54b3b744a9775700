#!/bin/bash
# phase.sh start|end NAME: lua-bench's --phase-cmd for run.sh. start: zero the counters of the redis-server
# running under callgrind and turn collection on; end: turn it off and dump the counts as NAME.
# CG_PID (set by run.sh): the redis-server's pid, so that no other callgrind run is touched.
set -e
case $1 in
  start) callgrind_control -i on ${CG_PID:-} >/dev/null 2>&1; callgrind_control -z ${CG_PID:-} >/dev/null 2>&1 ;;
  end) callgrind_control -d "$2" ${CG_PID:-} >/dev/null 2>&1; callgrind_control -i off ${CG_PID:-} >/dev/null 2>&1 ;;
esac
