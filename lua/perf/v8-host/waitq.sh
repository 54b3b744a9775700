#!/bin/bash
# waits (up to 4 min) until load1 < 0.5, then runs the command
for i in $(seq 1 240); do awk '{exit !($1<0.5)}' /proc/loadavg && break; sleep 1; done
exec "$@"
