#!/bin/sh
# Seeds the fuzz corpus with every fixture frame and its bare pickle.
set -e
cd "$(dirname "$0")"
mkdir -p corpus/pickle
for f in ../tests/fixtures/*.frame; do
    n=$(basename "$f" .frame)
    cp "$f" "corpus/pickle/$n.frame"
    tail -c +5 "$f" > "corpus/pickle/$n.pickle"
done
