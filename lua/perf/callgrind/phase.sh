#!/bin/bash
# phase.sh start|end NAME: lua-bench's --phase-cmd for run.sh. start: zero the counters of the redis-server
# running under callgrind and turn collection on; end: turn it off and dump the counts as NAME.
set -e
case $1 in
  start) callgrind_control -i on >/dev/null 2>&1; callgrind_control -z >/dev/null 2>&1 ;;
  end) callgrind_control -d "$2" >/dev/null 2>&1; callgrind_control -i off >/dev/null 2>&1 ;;
esac
