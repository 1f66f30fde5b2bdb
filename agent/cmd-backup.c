/* placeholder */
typedef int ova_placeholder_cmd_backup;
