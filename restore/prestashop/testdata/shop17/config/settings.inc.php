<?php
define('_DB_SERVER_', 'oldhost');
define('_DB_NAME_', 'shop16_old');
define('_DB_USER_', 'olduser');
define('_DB_PASSWD_', 'oldpass');
define('_DB_PREFIX_', 'shop_');
define('_MYSQL_ENGINE_', 'InnoDB');
define('_COOKIE_KEY_', 'TEST_ONLY_cookie_key_qYTLdkwdPKgpvgewuTnCgJWwJQEXiebitWfsvZr3');
define('_COOKIE_IV_', 'TESTONLY');
define('_PS_VERSION_', '1.6.1.12');
