<?php
class AppKernel extends Kernel
{
    const VERSION = '1.7.8.7';
    const MAJOR_VERSION_STRING = '1.7';
}
