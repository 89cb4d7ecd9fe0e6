<?php header("Location: ../");
