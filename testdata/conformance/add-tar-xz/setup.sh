# Make deterministic xz and bzip2 archives (git keeps no binary fixtures here).
mkdir -p src/bin
echo payload > src/data.txt
echo '#!/bin/sh' > src/bin/tool
chmod 0755 src/bin/tool
(cd src && tar --format=gnu --sort=name --mtime=@0 --numeric-owner --owner=0 --group=0 -cf ../pkg.tar .)
xz -9 -k -c pkg.tar > pkg.tar.xz
bzip2 -9 -c pkg.tar > pkg.tar.bz2
rm -rf src pkg.tar
