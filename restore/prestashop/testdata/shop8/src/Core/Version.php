<?php
namespace PrestaShop\PrestaShop\Core;
final class Version
{
    public const VERSION = '8.1.7';
    public const MAJOR_VERSION_STRING = '8';
}
