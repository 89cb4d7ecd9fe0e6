<?php return array ('parameters' => array ('database_name' => 'ps9_prod'));
