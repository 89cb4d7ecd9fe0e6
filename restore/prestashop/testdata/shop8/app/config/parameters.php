<?php
/**
 * Written by hand after a migration (short array syntax, comments).
 */
return [
  'parameters' => [
    // database
    'database_host' => "db.internal",
    'database_port' => 3306,
    'database_name' => 'shop8',
    'database_user' => 'shop8', # the app user
    'database_password' => 'p@ss"w$rd',
    'database_prefix' => 'ps_',
    'database_engine' => 'InnoDB',
    'mailer_transport' => 'smtp',
    'mailer_host' => '127.0.0.1',
    'mailer_user' => null,
    'mailer_password' => null,
    'secret' => 'TEST_ONLY_secret_8_' . 'concatenated',
    'ps_caching' => 'CacheMemcache',
    'ps_cache_enable' => false,
    'ps_creation_date' => '2023-01-17',
    'locale' => 'en-US',
    'use_debug_toolbar' => true,
    'cookie_key' => 'TEST_ONLY_cookie_key_8_6NiLzzVp8Z9LiOtHgBNScv929I2K8a2A8jNp',
    'cookie_iv' => 'TtPM0O7S',
    'new_cookie_key' => 'def000001b90465d16f2aa760abe76e1a88fb80071075978db96754d16fd83cef2',
  ],
];
