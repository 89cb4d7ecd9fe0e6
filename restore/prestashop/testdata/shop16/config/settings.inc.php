<?php
define('_DB_SERVER_', 'db.prod.internal:3307');
define('_DB_NAME_', 'shop16_prod');
define('_DB_USER_', 'shop16');
define('_DB_PASSWD_', 'pr0d\'pass\\word');
define('_DB_PREFIX_', 'ps16_');
define('_MYSQL_ENGINE_', 'InnoDB');
define('_PS_CACHING_SYSTEM_', 'CacheMemcache');
define('_PS_CACHE_ENABLED_', '0');
define('_COOKIE_KEY_', 'TEST_ONLY_cookie_key_0123456789abcdefghijklmnopqrstuvwxyzAB');
define('_COOKIE_IV_', 'TESTIV16');
define('_PS_CREATION_DATE_', '2016-03-01');
if (!defined('_PS_VERSION_'))
	define('_PS_VERSION_', '1.6.1.12');
define('_RIJNDAEL_KEY_', 'TEST_ONLY_rijndael_key_0123456789ab');
define('_RIJNDAEL_IV_', 'TEST_ONLY_iv_01==');
