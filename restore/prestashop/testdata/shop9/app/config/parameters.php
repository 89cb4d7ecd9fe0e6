<?php return array (
  'parameters' => 
  array (
    'database_host' => 'localhost',
    'database_port' => '',
    'database_name' => 'ps9_in_file',
    'database_user' => 'ps9_in_file',
    'database_password' => 'in-file',
    'database_prefix' => 'ps_',
    'database_engine' => 'InnoDB',
    'mailer_transport' => 'smtp',
    'mailer_host' => '127.0.0.1',
    'mailer_user' => NULL,
    'mailer_password' => NULL,
    'secret' => 'TEST_ONLY_secret_9_oAEwogUcdoTTQoZe3FUbgxtOOzfOUYQ0zWcGpE62Btzjm73NN',
    'ps_caching' => 'CacheMemcache',
    'ps_cache_enable' => false,
    'ps_creation_date' => '2025-07-01',
    'locale' => 'en-US',
    'use_debug_toolbar' => true,
    'cookie_key' => 'TEST_ONLY_cookie_key_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQR',
    'cookie_iv' => 'D7fjxXGPIf7jUStGeddPXdQDzLqY2VrC',
    'new_cookie_key' => 'def00000380fd759271fdc42d84526a00fdd89b2b42efac3795ddaefa53831d85c319dae2',
    'api_public_key' => '-----BEGIN PUBLIC KEY-----
TESTONLYNOTAREALKEYMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA0T8V
-----END PUBLIC KEY-----
',
    'api_private_key' => '-----BEGIN PRIVATE KEY-----
TESTONLYNOTAREALKEYMIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAo
-----END PRIVATE KEY-----
',
  ),
);
