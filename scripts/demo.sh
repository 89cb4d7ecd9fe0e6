#!/usr/bin/env bash
# Build shopvault, generate a small PrestaShop-like shop, back it up into a
# local repository, restore it with the restore key and prove it identical.
# Usage: scripts/demo.sh [DIR]   (default /tmp/shopvault-demo; removed first)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
DEMO=${1:-/tmp/shopvault-demo}
rm -rf "$DEMO" && mkdir -p "$DEMO/keys"
chmod 700 "$DEMO/keys"

echo "== build"
go build -o "$DEMO/shopvault" ./cmd/shopvault
sv="$DEMO/shopvault"

echo "== generate a sample shop in $DEMO/shop"
shop="$DEMO/shop"
mkdir -p "$shop"/{app/config,img/p,modules/ps_checkout,themes/classic/assets,var/cache/prod,var/logs,config}
cat > "$shop/app/config/parameters.php" <<'PHP'
<?php return array (
  'parameters' =>
  array (
    'database_host' => '127.0.0.1',
    'database_port' => '',
    'database_name' => 'prestashop',
    'database_user' => 'prestashop',
    'database_password' => 'demo-password',
    'database_prefix' => 'ps_',
    'cookie_key' => 'demo-cookie-key',
  ),
);
PHP
printf 'RewriteEngine on\n#Domain: shop.example.com\nRewriteCond %%{HTTP_HOST} ^shop.example.com$\n' > "$shop/.htaccess"
for i in $(seq 1 200); do
  printf '<?php\n// module file %d\nclass Demo%d { public function run() { return %d; } }\n' "$i" "$i" "$i" > "$shop/modules/ps_checkout/file$i.php"
done
for i in $(seq 1 40); do head -c 200000 /dev/urandom > "$shop/img/p/$i.jpg"; done
head -c 3000000 /dev/urandom > "$shop/themes/classic/assets/bundle.js"
seq 1 200000 | sed 's/^/GET \/product?id=/' > "$shop/var/logs/access.log"
echo "cached" > "$shop/var/cache/prod/appParameters.php"   # excluded by default
ln -s ../img "$shop/config/img-link"

echo "== init (host key stays on the server, restore key must leave it)"
"$sv" init --repo "$DEMO/repo" --host-key "$DEMO/keys/host.key" --restore-key "$DEMO/keys/restore.key"

export SHOPVAULT_REPO="$DEMO/repo" SHOPVAULT_HOST_KEY="$DEMO/keys/host.key" SHOPVAULT_CACHE_DIR="$DEMO/cache"
echo "== first backup"
"$sv" backup "$shop"
echo "== second backup, nothing changed (the change cache reads no file)"
"$sv" backup --json "$shop"
echo "== snapshots (host key)"
"$sv" snapshots
echo "== check (host key: structure and pack hashes)"
"$sv" check

echo "== restore with the restore key, verified"
export SHOPVAULT_RESTORE_KEY="$DEMO/keys/restore.key"
"$sv" restore latest --target "$DEMO/restore"
"$sv" check --read-data
diff -r --no-dereference -x cache "$shop" "$DEMO/restore$shop"
echo
echo "demo ok: $shop was backed up, restored into $DEMO/restore$shop and is identical (var/cache excluded by default)"
