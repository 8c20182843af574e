@echo off
rem Deploy TACoreService with Docker Compose on Windows (cmd.exe): the same steps as deploy.sh.
rem
rem   deploy.bat [up]      prepare, build, start, wait until healthy, print the addresses
rem   deploy.bat prepare   only write .env (secrets) and keys\ (CURVE, generated inside the image)
rem   deploy.bat scale N   run N workers
rem   deploy.bat status    the containers and the service's own health
rem   deploy.bat down      stop and remove the containers (the data, logs and Redis volumes stay)
rem
rem The keys are made by the keygen service of docker-compose.yml (clients scanner, trader,
rem risk_guard, optimizer, console, healthcheck, api: the CLIENTS of deploy.sh). This file keeps CRLF
rem line endings (.gitattributes): cmd.exe misreads labels in a batch file with LF only.
setlocal EnableExtensions
cd /d "%~dp0"
set "ENV_FILE=.env"
set "WAIT_TIMEOUT=300"
if defined TACORE_WAIT_TIMEOUT set "WAIT_TIMEOUT=%TACORE_WAIT_TIMEOUT%"

where docker >nul 2>nul
if errorlevel 1 (
    echo deploy.bat: docker not found: install Docker Desktop, then run again
    exit /b 1
)
docker compose version >nul 2>nul
if errorlevel 1 (
    echo deploy.bat: Docker Compose v2 not found: update Docker Desktop
    exit /b 1
)

set "COMMAND=%~1"
if "%COMMAND%"=="" set "COMMAND=up"
if /i "%COMMAND%"=="up" goto :up
if /i "%COMMAND%"=="prepare" goto :prepare_only
if /i "%COMMAND%"=="scale" goto :scale
if /i "%COMMAND%"=="status" goto :status
if /i "%COMMAND%"=="down" goto :down
if /i "%COMMAND%"=="help" goto :usage
echo deploy.bat: unknown command "%COMMAND%"
call :usage
exit /b 1

:usage
echo usage: deploy.bat [up ^| prepare ^| scale N ^| status ^| down]
exit /b 0

:up
call :prepare
if errorlevel 1 exit /b 1
docker compose up -d --build --wait --wait-timeout %WAIT_TIMEOUT%
if errorlevel 1 goto :up_failed
docker compose exec -T tacoreservice tacore health
echo.
echo TACoreService is up.
echo   Dashboard and API  http://localhost:8080/   bearer token: TACORE_API_TOKEN in .env
echo   Clients (ZeroMQ)   tcp://localhost:5555     CURVE: keys\server.key and keys\private\NAME.key_secret
echo   Health             deploy.bat status
echo   Workers            deploy.bat scale N
echo   ScanPulse demo     docker compose logs -f scanpulse
echo   Stop               deploy.bat down
exit /b 0

:up_failed
docker compose ps
docker compose logs --tail 40 tacoreservice
echo deploy.bat: the services were not healthy within %WAIT_TIMEOUT% s (logs above; deploy.bat status)
exit /b 1

:prepare_only
call :prepare
exit /b %errorlevel%

:prepare
call :write_env
if errorlevel 1 exit /b 1
call :write_keys
if errorlevel 1 exit /b 1
echo wrote %ENV_FILE% and keys\: keep both out of version control
exit /b 0

:write_env
if not exist "%ENV_FILE%" type nul > "%ENV_FILE%"
rem Docker Desktop does not enforce the container user's ids on bind mounts: the image default.
call :env_default TACORE_UID 10001
call :env_default TACORE_GID 10001
call :random_hex
if errorlevel 1 exit /b 1
call :env_default TACORE_API_TOKEN %RANDOM_HEX%
call :random_hex
if errorlevel 1 exit /b 1
call :env_default REDIS_PASSWORD %RANDOM_HEX%
rem .env holds the API token and the Redis password: only this user may read it.
icacls "%ENV_FILE%" /inheritance:r /grant:r "%USERNAME%:F" >nul
exit /b 0

:env_default
rem Values already in .env win: only a missing NAME is added.
findstr /b /c:"%~1=" "%ENV_FILE%" >nul 2>nul
if not errorlevel 1 exit /b 0
>>"%ENV_FILE%" echo %~1=%~2
exit /b 0

:random_hex
set "RANDOM_HEX="
for /f "usebackq delims=" %%H in (`powershell -NoProfile -NonInteractive -Command "$b = New-Object byte[] 32; [Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($b); [BitConverter]::ToString($b).Replace('-', '').ToLower()"`) do set "RANDOM_HEX=%%H"
if not defined RANDOM_HEX (
    echo deploy.bat: PowerShell could not make a random secret
    exit /b 1
)
exit /b 0

:write_keys
rem Existing pairs are kept: running this again never locks a module out.
if not exist keys mkdir keys
docker compose run --rm keygen
if errorlevel 1 (
    echo deploy.bat: key generation failed
    exit /b 1
)
exit /b 0

:scale
set "WORKERS=%~2"
if "%WORKERS%"=="" goto :scale_usage
echo %WORKERS%| findstr /r "^[0-9][0-9]*$" >nul
if errorlevel 1 goto :scale_usage
docker compose up -d --no-recreate --scale tacore_worker=%WORKERS% tacore_worker
if errorlevel 1 exit /b 1
docker compose ps tacore_worker
exit /b 0

:scale_usage
echo deploy.bat: scale needs a number of workers, e.g. deploy.bat scale 8
exit /b 1

:status
docker compose ps
docker compose exec -T tacoreservice tacore health --detailed
exit /b %errorlevel%

:down
docker compose down
exit /b %errorlevel%
