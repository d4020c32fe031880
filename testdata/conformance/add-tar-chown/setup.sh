mkdir -p src/d
echo one > src/d/one.txt
(cd src && tar --format=gnu --sort=name --mtime=@0 --numeric-owner --owner=4000 --group=4000 -cf ../archive.tar d)
rm -rf src
