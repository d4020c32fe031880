# gzip-compressed tars; the second has a name that does not say so.
mkdir -p src/d
echo one > src/one.txt
echo deep > src/d/deep.txt
(cd src && tar --format=gnu --sort=name --mtime=@0 --numeric-owner --owner=0 --group=0 -cf ../archive.tar one.txt d)
gzip -n -9 archive.tar
cp archive.tar.gz weird-name.bin
rm -rf src
