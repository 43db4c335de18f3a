#!/bin/sh
# Seed 003's job script, for busybox: -d DATA -c CONFIG -o OUTPUT_FOLDER.
# Reads one config file and the data file, writes its result under the output folder.
while getopts d:c:o: opt; do
  case $opt in d) DATA=$OPTARG;; c) CONF=$OPTARG;; o) OUT=$OPTARG;; esac
done
echo "training with $(cat "$CONF") on $(wc -c < "$DATA") bytes of data"
sleep 2
echo "$(cat "$CONF"): accuracy 0.$(date +%N | cut -c1-3)" > "${OUT}my_output.txt"
