# git keeps only 0644 and 0755
chmod 4755 tool
chmod 2755 gtool
chmod 0600 secret
mkdir sticky && chmod 1777 sticky
chmod 0711 dirs
