<?php return array ('parameters' => array ('database_name' => 'shop17_prod'));
