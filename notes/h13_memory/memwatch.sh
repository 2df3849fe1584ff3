#!/bin/bash
# lesson kernels (ipykernel) only; stop it with kill when the bench is done
# every 10 s: time, pid, RSS MB, RssAnon MB of each ipykernel
while true; do
  for p in $(pgrep -f ipykernel_launcher); do
    a=$(awk '/RssAnon/{print int($2/1024)}' /proc/$p/status 2>/dev/null)
    r=$(awk '/VmRSS/{print int($2/1024)}' /proc/$p/status 2>/dev/null)
    echo "$(date +%H:%M:%S) $p $r $a"
  done
  sleep 10
done
