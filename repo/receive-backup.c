/* placeholder */
typedef int ova_placeholder_receive_backup;
