<?php
namespace PrestaShop\PrestaShop\Core;
final class Version
{
    public const VERSION = '9.0.0';
}
