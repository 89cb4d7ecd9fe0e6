#!/bin/sh
# Generates the throwaway keys and files the drill needs into
# /tmp/shopvault-drill/keys (the paths shopvault.toml and compose.yaml use):
# the SFTP server's host key, a known_hosts line for it, the client key and
# the MariaDB credentials. Run it before `docker compose up`.
set -eu
D=/tmp/shopvault-drill
mkdir -p "$D/keys" "$D/work/shop"
chmod 700 "$D/keys"
cd "$D"
[ -f keys/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -C drill-host -f keys/ssh_host_ed25519_key
[ -f keys/id_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -C drill-client -f keys/id_ed25519
chmod 600 keys/id_ed25519
# shopvault checks host keys strictly; record the generated one for port 2222.
printf '[127.0.0.1]:2222 %s\n' "$(cut -d' ' -f1,2 keys/ssh_host_ed25519_key.pub)" > keys/known_hosts
printf '[client]\nuser=root\npassword=drill-only-root-password\n' > keys/my.cnf
chmod 600 keys/my.cnf
ssh-keygen -lf keys/ssh_host_ed25519_key.pub
